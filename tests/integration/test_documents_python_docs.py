"""The whole Python 3.11 HTML documentation loads and chunks cleanly, and every benchmark gold
citation (page + anchor) is a chunk the retriever can return."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slm.kb.chunking import chunk_document
from slm.config import IngestSettings
from slm.kb.documents import IMAGE_SUFFIXES, discover, load_document

pytestmark = pytest.mark.integration

PY_HTML = Path("/usr/share/doc/python3.11/html")
GOLD = Path(os.environ.get("SLM_FAQ_QA", Path(__file__).parents[3] / "shared" / "eval" / "python_faq_qa.jsonl"))
SAMPLE = Path(__file__).parents[2] / "corpora" / "python-docs"


def test_full_python_docs_load_and_chunk():
    assert PY_HTML.is_dir(), "install the Debian package python3.11-doc"
    ingest = IngestSettings()
    # The pages, not their diagrams: a PNG is read by OCR, and these diagrams hold no text to find.
    paths = [p for p in discover(PY_HTML, ingest.include, ingest.exclude) if p.suffix.lower() not in IMAGE_SUFFIXES]
    assert len(paths) > 500
    chunks_total = 0
    for path in paths:
        doc = load_document(path, PY_HTML, max_bytes=int(ingest.max_file_mb * 1e6))
        assert doc.text.strip() and doc.title
        assert "¶" not in doc.text
        chunks = chunk_document(doc, chunk_chars=ingest.chunk_chars, overlap=ingest.chunk_overlap,
                                min_chars=ingest.min_chunk_chars)
        for chunk in chunks:
            assert chunk.text == doc.text[chunk.start : chunk.end]
            assert len(chunk.text) <= ingest.chunk_chars
        chunks_total += len(chunks)
    assert chunks_total > 5000


@pytest.mark.parametrize("root", [PY_HTML, SAMPLE], ids=["full-docs", "sample-corpus"])
def test_every_gold_citation_is_a_chunk(root):
    assert GOLD.is_file(), f"benchmark questions not found at {GOLD}; set SLM_FAQ_QA"
    rows = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    chunks_by_source: dict[str, set[str | None]] = {}
    missing = []
    for row in rows:
        source = row["source"]
        if source not in chunks_by_source:
            doc = load_document(root / source, root, max_bytes=10_000_000)
            assert doc.id == source
            chunks_by_source[source] = {c.anchor for c in chunk_document(doc)}
        if row["anchor"] not in chunks_by_source[source]:
            missing.append(f"{source}#{row['anchor']}")
    assert not missing
