"""The audience filter runs inside the search: k visible hits come back even when many more restricted
chunks rank above them, in dense (FAISS), BM25 and hybrid mode; `slm search --audience` shows only those."""

from __future__ import annotations

import json
import shutil

import pytest

from slm.access.labels import can_see
from tests.helpers.kb import write_doc
from tests.leak.canary import CORPUS, canary_settings, find_leaks, hidden_from, ingest_canary

POOL = "The 2026 bonus pool is shared across all teams according to the performance ratings"
RESTRICTED_DOCS = 80  # more than retrieval.candidates below: a filter after the search would come back empty
PUBLIC = frozenset({"public"})


@pytest.fixture(scope="module")
def kb(tmp_path_factory, tiny_embedder_dir):
    base = tmp_path_factory.mktemp("access-retrieval")
    root = base / "corpus"
    shutil.copytree(CORPUS, root)
    for i in range(RESTRICTED_DOCS):  # identical restricted documents; the query is their text, so they
        write_doc(root, f"hr/pool-{i:03d}.md", "Bonus pool note", {"Pool": f"{POOL}. {POOL}."})  # outrank all
    for i in range(12):  # public chunks that share a word or two with the query
        write_doc(root, f"public/faq-{i:02d}.md", f"FAQ {i}", {"Answer": f"Question {i}: the staff bonus is yearly; "
                                                              f"returns take {i + 2} days at the warehouse."})
    settings = canary_settings(base / "kb", tiny_embedder_dir)
    settings.retrieval.candidates = 10
    kb = ingest_canary(settings, root)
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def query(kb):
    """Exactly what the embedder and BM25 indexed for the restricted copies (cosine 1 even for a random embedder)."""
    from slm.kb.chunking import context_text

    return context_text(next(c for c in kb.all_chunks() if c.doc_id == "hr/pool-000.md"))


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize("k", [5, 10])
def test_k_public_hits_although_restricted_chunks_rank_higher(kb, query, mode, k):
    retriever = kb.retriever()
    trusted = retriever.retrieve(query, k, mode=mode)
    # the premise: without a filter, restricted chunks fill the top k
    assert len(trusted) == k and all(h.chunk.audiences == ("hr",) for h in trusted)
    visible = retriever.retrieve(query, k, audiences=PUBLIC, mode=mode)
    assert len(visible) == k, f"{mode}: {len(visible)} of {k}"
    assert all(can_see(h.chunk.audiences, PUBLIC) for h in visible)
    assert len({h.chunk.id for h in visible}) == k
    assert not find_leaks([h.chunk.text for h in visible], hidden_from(PUBLIC))


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_audience_sees_only_its_own(kb, mode):
    for audiences in (frozenset({"hr"}), frozenset({"finance"}), frozenset({"employees"}), frozenset({"public", "employees"})):
        hits = kb.retriever().retrieve("bonus pool forecast acquisition door code merger", 20, audiences=audiences, mode=mode)
        assert hits and all(can_see(h.chunk.audiences, audiences) for h in hits)
        assert not find_leaks([h.chunk.text for h in hits], hidden_from(audiences))


def test_no_matching_label_no_results(kb):
    for audiences in (frozenset(), frozenset({"contractors"})):
        assert kb.retriever().retrieve(POOL, 5, audiences=audiences) == []


def test_slm_search_with_audience_shows_only_visible_documents(kb, monkeypatch, capsys):
    from typer.testing import CliRunner

    from slm.cli.main import app

    monkeypatch.setattr("slm.cli.kb_commands.settings_from", lambda kb_dir, config: kb.settings)
    runner = CliRunner()
    probes = ["bonus pool 2026", "Q3 revenue forecast", "acquire Brightwater Labs", "door code", "the canary code",
              "Project Nightjar Leeds", "salary review budget", "Alpine Threads merger"]
    leaks = trusted_leaks = 0
    for query in probes:
        result = runner.invoke(app, ["search", query, "--audience", "public", "--json", "-k", "10"])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert all(not r["doc_id"].startswith(("hr/", "finance/", "internal/", "misc/")) for r in rows)
        leaks += len(find_leaks(rows, hidden_from(PUBLIC), probe=query))
        trusted = runner.invoke(app, ["search", query, "--json", "-k", "10"])  # the control: trusted sees them
        assert trusted.exit_code == 0
        trusted_leaks += len(find_leaks(trusted.stdout, hidden_from(PUBLIC), probe=query))
    print(f"LEAK SUITE slm search --audience public: {len(probes)} probes, {leaks} leaks "
          f"(control without --audience: {trusted_leaks} restricted markers)")
    assert leaks == 0
    assert trusted_leaks > len(probes)  # the probes do reach the restricted documents when allowed
