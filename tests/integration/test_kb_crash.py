"""Crash safety: an ingest killed with SIGKILL at any stage leaves the previous KB answering exactly as
before (or, once committed, the new one), and the next run completes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from tests.helpers.kb import kb_settings, write_corpus, write_doc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from slm.kb.embedding import Embedder
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase
    from tests.helpers.kb import kb_settings

    corpus, kb_dir, embedder_dir, _repo, kill_at = sys.argv[1:6]
    calls = {"encode": 0}
    original = Embedder.encode

    def encode(self, texts, **kw):
        out = original(self, texts, **kw)
        calls["encode"] += 1
        print(f"ENCODED {calls['encode']}", flush=True)
        if kill_at == "mid-embedding" and calls["encode"] == 2:
            print("KILLPOINT", flush=True)
            time.sleep(120)
        return out

    Embedder.encode = encode

    def on_stage(name):
        print(f"STAGE {name}", flush=True)
        if name == kill_at:
            print("KILLPOINT", flush=True)
            time.sleep(120)

    settings = kb_settings(Path(kb_dir), embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        report = ingest(Path(corpus), kb, progress=True, on_stage=on_stage)
    print(f"DONE added={report.added} changed={report.changed} embedded={report.embedded}", flush=True)
    """
)

QUERIES = ["refund to the original payment method", "Tucson warehouse parcels", "annual leave doctor's note",
           "confidential refunds note", "passwords rotate badges"]


def _snapshot(settings):
    with KnowledgeBase.open(settings.kb, settings) as kb:
        r = kb.retriever()
        results = {
            (q, mode): [(h.chunk.id, round(h.score, 6), h.chunk.text) for h in r.retrieve(q, 6, mode=mode)]
            for q in QUERIES
            for mode in ("dense", "bm25", "hybrid")
        }
        return results, kb.store.counts(), kb.current_generation()


def _run_driver(tmp_path, corpus, settings, embedder_dir, kill_at):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(corpus), str(settings.kb), str(embedder_dir), str(REPO), kill_at],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("KILLPOINT"):
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
    finally:
        watchdog.cancel()
    return proc.returncode, lines, proc.stderr.read()


def test_sigkill_at_every_stage_keeps_the_kb_usable(tmp_path, tiny_embedder_dir):
    corpus = write_corpus(tmp_path / "docs", secret_docs=3)
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(corpus, kb, progress=False)
    before, counts, generation = _snapshot(settings)
    with KnowledgeBase.open(settings.kb, settings) as kb:
        cached_before = kb.store.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    # A big change: edits, a deletion and 120 new files (several embedding checkpoints).
    write_doc(corpus, "refunds.md", "About refunds", {"Overview": "Refunds are now store credit only, within 14 days."})
    (corpus / "shipping.md").unlink()
    for i in range(120):
        write_doc(corpus, f"bulk/page{i:03d}.md", f"Bulk page {i}",
                  {"Part one": f"Bulk topic {i} covers warehouse shelving and inventory counts.",
                   "Part two": f"Further notes {i} on forklifts, pallets and loading docks."})

    for kill_at in ("mid-embedding", "load", "embed", "index", "built"):
        code, lines, err = _run_driver(tmp_path, corpus, settings, tiny_embedder_dir, kill_at)
        assert code == -signal.SIGKILL, (lines, err[-2000:])
        assert "KILLPOINT" in lines
        after, counts_after, generation_after = _snapshot(settings)
        assert (counts_after, generation_after) == (counts, generation), kill_at
        assert after == before, f"search results changed after a kill at {kill_at}"
        if kill_at == "mid-embedding":
            assert "ENCODED 2" in lines and "STAGE embed" in lines  # it died midway through embedding
            with KnowledgeBase.open(settings.kb, settings) as kb:
                cached = kb.store.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            assert cached > cached_before  # checkpointed vectors survive the kill (not visible to search)

    # Killed right after the commit: the new generation is live and complete.
    code, lines, err = _run_driver(tmp_path, corpus, settings, tiny_embedder_dir, "committed")
    assert code == -signal.SIGKILL, (lines, err[-2000:])
    with KnowledgeBase.open(settings.kb, settings) as kb:
        assert kb.current_generation() > generation
        assert not [d for d in kb.documents() if d.id == "shipping.md"]
        hits = kb.retriever().retrieve("forklifts pallets loading docks", 3, mode="bm25")
        assert hits and hits[0].chunk.doc_id.startswith("bulk/")
        assert kb.index().live == kb.store.counts()[1]  # live rows: the tombstoned ones of changed files are not

    # The next run completes (nothing left to do) and leaves no temp folders or stale generations.
    code, lines, err = _run_driver(tmp_path, corpus, settings, tiny_embedder_dir, "never")
    assert code == 0, err[-2000:]
    assert lines[-1] == "DONE added=0 changed=0 embedded=0"
    index_dir = settings.kb / "index"
    assert not [p for p in index_dir.iterdir() if p.name.startswith("tmp-")]


def test_kill_midway_then_rerun_completes_with_cached_vectors(tmp_path, tiny_embedder_dir):
    corpus = write_corpus(tmp_path / "docs")
    for i in range(80):
        write_doc(corpus, f"bulk/p{i:03d}.md", f"Page {i}", {"Body": f"Inventory note {i} about shelving bays."})
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    code, lines, err = _run_driver(tmp_path, corpus, settings, tiny_embedder_dir, "mid-embedding")
    assert code == -signal.SIGKILL
    with KnowledgeBase.open(settings.kb, settings) as kb:  # the first ingest never committed: empty, usable
        assert kb.current_generation() is None and kb.retriever().retrieve("shelving", 3) == []
    code, lines, err = _run_driver(tmp_path, corpus, settings, tiny_embedder_dir, "never")
    assert code == 0, err[-2000:]
    done = lines[-1]
    assert done.startswith("DONE added=85 changed=0 embedded=")
    total = sum(1 for _ in KnowledgeBase.open(settings.kb, settings).all_chunks())
    assert int(done.rsplit("=", 1)[1]) < total  # vectors computed before the kill were reused
