"""`slm ingest https://… --crawl` through the CLI, then `slm retrain` (no --root: the KB's recorded source and
options) following a changed and a deleted page on the loopback site; `retrain --watch`'s watcher noticing a
new commit on a Git source."""

import dataclasses
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from slm.retraining.changes import SourceWatcher
from slm.retraining.history import Outcome
from slm.retraining.run import run_pass
from tests.helpers.kb import kb_settings
from tests.helpers.site import Site, SiteServer

pytestmark = pytest.mark.integration


def _cli(*args):
    from slm.cli.main import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def settings(tmp_path, tiny_embedder_dir):
    s = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    s.retrain.min_changed_share = 1.01  # index only: this test is about following the source, not training
    s.retrain.min_new_documents = 10**6
    return s


def _config(settings, path):
    data = dataclasses.asdict(settings)
    data["kb"] = str(settings.kb)
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_crawl_then_retrain_follows_the_site(settings, tmp_path):
    site = Site()
    site.page("/docs/", "Handbook", "The staff handbook.", links=("leave.html", "badges.html", "far.html"))
    site.page("/docs/leave.html", "Leave", "Employees accrue twenty five days of paid annual leave.")
    site.page("/docs/badges.html", "Badges", "Badges must be worn visibly inside the office.")
    site.page("/docs/far.html", "Far", "Two clicks away.", links=("farther.html",))
    site.page("/docs/farther.html", "Farther", "Past --max-depth 1.")
    config = _config(settings, tmp_path / "slm.yaml")
    with SiteServer(site) as base:
        result = _cli("ingest", f"{base}/docs/", "--crawl", "--max-pages", "10", "--max-depth", "1",
                      "--config", str(config), "--quiet")
        assert result.exit_code == 0, result.output
        assert "4 documents seen, 4 added" in result.output  # farther.html is two clicks deep
        assert "/docs/farther.html" not in site.paths()

        site.page("/docs/leave.html", "Leave", "Employees now accrue thirty days of paid annual leave.")
        del site.resources["/docs/badges.html"]
        site.page("/docs/", "Handbook", "The staff handbook.", links=("leave.html", "far.html"))
        record = run_pass(settings, log=lambda m: None)
        assert record.outcome is Outcome.INDEX
        assert record.root == f"{base}/docs/"
        assert record.changes.modified == (f"{base}/docs/", f"{base}/docs/leave.html")  # the index lost a link
        assert record.changes.deleted == (f"{base}/docs/badges.html",)
        assert "farther" not in " ".join(site.paths())  # the stored --max-depth 1 held on the retrain pass too

        status = _cli("status", "--config", str(config))
        assert f"root:           {base}/docs/" in status.output and "documents:      3" in status.output


def test_watcher_polls_a_git_source_by_its_listing(tmp_path, settings):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}

    def git(*args, cwd=tmp_path):
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "--bare", "--initial-branch=main", str(tmp_path / "docs.git"))
    git("clone", "-q", str(tmp_path / "docs.git"), str(tmp_path / "work"))
    work = tmp_path / "work"
    git("checkout", "-q", "-b", "main", cwd=work)
    (work / "a.md").write_text("# A\n\nFirst text of the page.\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)

    watcher = SourceWatcher(f"git+file://{tmp_path / 'docs.git'}@main", settings)
    assert watcher.changed()  # first look
    assert not watcher.changed()
    (work / "a.md").write_text("# A\n\nSecond text of the page.\n")
    git("commit", "-q", "-am", "two", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    assert watcher.changed() and not watcher.changed()
