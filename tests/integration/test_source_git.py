"""A Git repository as a source, against a real bare repository on disk (git+file://): ingest at a ref,
the commit recorded as the version, only paths whose blob changed fetched again, deletions followed by
`detect_changes` / a re-ingest, sidecars and path rules giving audiences, symlinks never followed."""

import os
import subprocess
from pathlib import Path

import pytest

from slm.kb.connectors.git import GitSource, parse_git_uri
from slm.kb.connectors.spec import limits_for
from slm.config import IngestSettings
from slm.errors import SourceError
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retraining.changes import ChangeSet, detect_changes
from tests.helpers.kb import TOPICS, kb_settings

pytestmark = pytest.mark.integration

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(*args, cwd):
    out = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def page(title, text):
    return f"# {title}\n\n## Overview\n\n{text}\n\n## Details\n\nMore: {text}\n"


@pytest.fixture
def repo(tmp_path):
    """A bare repository (the 'server') and a work clone to commit from."""
    bare = tmp_path / "docs.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", str(bare), str(work), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    for topic, text in TOPICS.items():
        (work / f"{topic}.md").write_text(page(f"About {topic}", text), encoding="utf-8")
    (work / "hr").mkdir()
    (work / "hr" / "salaries.md").write_text(page("Salaries", "Salary bands are reviewed every March."), encoding="utf-8")
    (work / "board.md").write_text(page("Board", "The board meets quarterly in Lisbon."), encoding="utf-8")
    (work / "board.md.meta.yaml").write_text("audience: [board]\n", encoding="utf-8")
    (work / "image.bin").write_bytes(b"\x00\x01")  # not a document format: never listed
    os.symlink("/etc/passwd", work / "passwd.txt")  # a symlink's target is outside the repository
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return bare, work


def commit(work, message):
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def test_parse_git_uri():
    assert parse_git_uri("git+https://git.example/docs.git@main") == ("https://git.example/docs.git", "main")
    assert parse_git_uri("git+file:///srv/docs.git") == ("file:///srv/docs.git", "HEAD")
    assert parse_git_uri("git+ssh://git@host/docs.git@v2") == ("ssh://git@host/docs.git", "v2")
    with pytest.raises(SourceError):
        parse_git_uri("git+https://host/docs.git@--upload-pack=evil")
    with pytest.raises(SourceError, match="credentials in the URL"):
        GitSource("git+https://user:token@host/docs.git@main", limits_for(IngestSettings()), cache_dir=Path("/tmp"))


def test_git_source_ingest_change_delete_and_audiences(repo, tmp_path, tiny_embedder_dir, monkeypatch):
    bare, work = repo
    uri = f"git+file://{bare}@main"
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    settings.access.rules = {"hr/**": ["hr"]}
    fetched: list[str] = []
    real_fetch = GitSource.fetch
    monkeypatch.setattr(GitSource, "fetch", lambda self, item: fetched.append(item.id) or real_fetch(self, item))

    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        first = ingest(uri, kb, progress=False)
        head = git("rev-parse", "HEAD", cwd=work)
        assert first.version == head and kb.store.get_meta("source_version") == head
        ids = {d.id for d in kb.documents()}
        assert ids == {f"{t}.md" for t in TOPICS} | {"hr/salaries.md", "board.md"}  # no symlink, no .bin
        audiences = {d.id: tuple(d.audiences) for d in kb.documents()}
        assert audiences["hr/salaries.md"] == ("hr",) and audiences["board.md"] == ("board",)
        assert audiences["refunds.md"] == ("employees",)
        assert kb.root == uri and first.failed == ()

        # One file changed, one deleted, one added, one sidecar changed: only those are fetched again.
        (work / "refunds.md").write_text(page("About refunds", "Refunds now take 45 days."), encoding="utf-8")
        (work / "shipping.md").unlink()
        (work / "parking.md").write_text(page("Parking", "Parking permits are issued by facilities."), encoding="utf-8")
        (work / "board.md.meta.yaml").write_text("audience: [board, executives]\n", encoding="utf-8")
        second_commit = commit(work, "second")
        changes = detect_changes(uri, kb)
        assert changes == ChangeSet(("parking.md",), ("board.md", "refunds.md"), ("shipping.md",))
        fetched.clear()
        second = ingest(uri, kb, progress=False)
        assert sorted(fetched) == ["board.md", "parking.md", "refunds.md"]
        assert (second.added, second.changed, second.deleted, second.version) == (1, 2, 1, second_commit)
        assert "shipping.md" not in {d.id for d in kb.documents()}
        assert {d.id: tuple(d.audiences) for d in kb.documents()}["board.md"] == ("board", "executives")
        refunds = [c.text for c in kb.store.chunks_of("refunds.md")]
        assert any("45 days" in t for t in refunds)

        # Nothing new upstream: nothing fetched, nothing written.
        fetched.clear()
        third = ingest(uri, kb, progress=False)
        assert fetched == [] and third.chunks_written == 0 and third.unchanged == len(ids)


def test_git_source_pinned_ref_and_unreachable_repo(repo, tmp_path, tiny_embedder_dir):
    bare, work = repo
    first_commit = git("rev-parse", "HEAD", cwd=work)
    git("tag", "v1", cwd=work)
    git("push", "--quiet", "origin", "v1", cwd=work)
    (work / "refunds.md").write_text(page("About refunds", "Changed after the tag."), encoding="utf-8")
    commit(work, "after tag")
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        report = ingest(f"git+file://{bare}@v1", kb, progress=False)
        assert report.version == first_commit
        assert not any("Changed after" in c.text for c in kb.store.chunks_of("refunds.md"))
        documents = kb.store.counts()
        # A repository that is gone fails the run and removes nothing.
        with pytest.raises(SourceError, match="git"):
            ingest(f"git+file://{tmp_path}/missing.git@main", kb, progress=False)
        with pytest.raises(SourceError, match="nope"):
            ingest(f"git+file://{bare}@nope", kb, progress=False)
        assert kb.store.counts() == documents
