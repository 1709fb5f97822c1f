"""Chunking: heading units, short headings merged into their first child, long sections split
with overlap, and the slice invariant over many documents."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slm.kb.chunking import chunk_document
from slm.kb.documents import discover, load_document
from slm.kb.loaders.builder import TextBuilder
from slm.types import Document, PageSpan
from tests.fixtures.builders import make_docx, make_pdf

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "docs"


def _doc_from_builder(out: TextBuilder, doc_id: str = "d.md", **kw) -> Document:
    text, sections = out.build()
    return Document(id=doc_id, title="T", text=text, source=doc_id, content_hash="h", sections=sections, **kw)


def _check_invariants(doc: Document, chunks, chunk_chars: int) -> None:
    assert [c.id for c in chunks] == [f"{doc.id}::{i:04d}" for i in range(len(chunks))]
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text.strip() == chunk.text and chunk.text
        assert len(chunk.text) <= chunk_chars  # never over size
        assert chunk.doc_id == doc.id and chunk.source == doc.source and chunk.audiences == doc.audiences
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    # every non-blank character of the document lies in some chunk
    covered = bytearray(len(doc.text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]]
    assert not missing, doc.text[missing[0] : missing[0] + 40]


def _corpus_documents() -> list[Document]:
    docs = []
    for root in (ROOT / "corpora" / "tiny", FIXTURES):
        docs += [load_document(p, root, max_bytes=2_000_000) for p in discover(root, ["**/*"], [])]
    py = ROOT / "corpora" / "python-docs"
    for rel in ("faq/programming.html", "faq/design.html", "library/re.html", "tutorial/datastructures.html", "glossary.html"):
        docs.append(load_document(py / rel, py, max_bytes=5_000_000))
    return docs


@pytest.mark.parametrize(("chunk_chars", "overlap", "min_chars"), [(1200, 150, 40), (300, 60, 40), (120, 0, 10), (2000, 300, 200)])
def test_slice_invariant_and_coverage_over_real_documents(chunk_chars, overlap, min_chars):
    for doc in _corpus_documents():
        chunks = chunk_document(doc, chunk_chars=chunk_chars, overlap=overlap, min_chars=min_chars)
        assert chunks
        _check_invariants(doc, chunks, chunk_chars)


def test_slice_invariant_over_random_documents():
    rng = random.Random(1234)
    words = "alpha beta gamma delta epsilon zeta eta theta. iota kappa! lambda? mu nu xi".split()
    for case in range(60):
        out = TextBuilder()
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            if kind < 0.3:
                out.heading(rng.randint(1, 4), " ".join(rng.choices(words, k=3)), f"a{rng.randint(0, 999)}")
            elif kind < 0.45:
                out.block("\n".join("    " + " ".join(rng.choices(words, k=6)) for _ in range(rng.randint(1, 30))), verbatim=True)
            elif kind < 0.5:
                out.block("x" * rng.randint(1, 3000))  # one unbreakable word
            else:
                out.block(" ".join(rng.choices(words, k=rng.randint(1, 400))), tight=rng.random() < 0.3)
        doc = _doc_from_builder(out, f"r{case}.md")
        if not doc.text.strip():
            continue
        size = rng.choice([80, 200, 700, 1200])
        chunks = chunk_document(doc, chunk_chars=size, overlap=rng.choice([0, 20, 150]), min_chars=rng.choice([0, 40]))
        _check_invariants(doc, chunks, size)


def test_one_chunk_per_short_section_with_its_anchor():
    out = TextBuilder()
    out.heading(1, "Policy", "policy")
    out.heading(2, "Refunds", "refunds")
    out.block("Refunds are paid within five business days after the parcel arrives.")
    out.heading(2, "Returns", "returns")
    out.block("Returns are accepted within thirty days of delivery, unused and packed.")
    doc = _doc_from_builder(out)
    chunks = chunk_document(doc, chunk_chars=500, overlap=50, min_chars=40)
    assert [c.anchor for c in chunks] == ["refunds", "returns"]
    # the bare "Policy" heading joined its first child, with the heading line included
    assert chunks[0].text.startswith("Policy\n\nRefunds\n\nRefunds are paid")
    assert chunks[0].section == ("Policy", "Refunds")
    assert chunks[1].text.startswith("Returns\n\n") and chunks[1].section == ("Policy", "Returns")


def test_short_siblings_are_never_merged():
    out = TextBuilder()
    out.heading(1, "FAQ", "faq")
    out.block("Answers to the questions people ask most often about the product.")
    for i in range(4):
        out.heading(2, f"Q{i}?", f"q{i}")
        out.block("Yes.")
    doc = _doc_from_builder(out)
    chunks = chunk_document(doc, chunk_chars=1200, overlap=100, min_chars=40)
    assert [c.anchor for c in chunks] == ["faq", "q0", "q1", "q2", "q3"]
    assert chunks[2].text == "Q1?\n\nYes."


def test_long_section_splits_on_paragraphs_with_overlap():
    out = TextBuilder()
    out.heading(1, "Long", "long")
    paragraphs = [f"Paragraph {i} " + "word " * 40 + "end." for i in range(12)]
    for p in paragraphs:
        out.block(p)
    doc = _doc_from_builder(out)
    chunks = chunk_document(doc, chunk_chars=600, overlap=120, min_chars=40)
    assert len(chunks) > 3
    assert all(c.anchor == "long" and len(c.text) <= 600 for c in chunks)
    for chunk in chunks[:-1]:
        assert chunk.text.endswith("end.")  # cut at a paragraph end, not mid-sentence
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start < prev.end  # overlapping
        assert doc.text[nxt.start - 1].isspace()  # next piece opens at a word start


def test_code_block_split_keeps_whole_lines():
    out = TextBuilder()
    out.heading(1, "Code", "code")
    out.block("\n".join(f"    line_{i:03d} = compute({i})" for i in range(200)), verbatim=True)
    doc = _doc_from_builder(out)
    chunks = chunk_document(doc, chunk_chars=500, overlap=60)
    assert len(chunks) > 5
    for chunk in chunks[1:]:
        assert chunk.text.startswith("line_")  # starts at a line (leading indent trimmed)
        assert chunk.text.endswith(")")


def test_pdf_chunks_carry_their_start_page(tmp_path):
    doc = load_document(make_pdf(tmp_path / "h.pdf"), tmp_path, max_bytes=1_000_000)
    chunks = chunk_document(doc, chunk_chars=1200, overlap=0, min_chars=0)
    assert [c.page for c in chunks] == [1, 2, 3]
    assert [c.section for c in chunks] == [("Returns",), ("Warranty",), ("Contact",)]
    assert chunks[1].location == "h.pdf (page 2)"
    small = chunk_document(doc, chunk_chars=30, overlap=0, min_chars=0)
    for chunk in small:
        page = next(p for p in doc.pages if p.start <= chunk.start < p.end)
        assert chunk.page == page.number


def test_pages_without_sections_still_get_pages():
    text = "one " * 100 + "\n\n" + "two " * 100
    doc = Document(id="p.pdf", title="P", text=text.strip(), source="p.pdf", content_hash="h",
                   pages=(PageSpan(1, 0, 399), PageSpan(2, 401, len(text.strip()))))
    chunks = chunk_document(doc, chunk_chars=300, overlap=0)
    assert chunks[0].page == 1 and chunks[-1].page == 2


def test_docx_and_real_faq_citations(tmp_path):
    doc = load_document(make_docx(tmp_path / "t.docx"), tmp_path, max_bytes=1_000_000)
    chunks = chunk_document(doc, chunk_chars=1200, overlap=100, min_chars=40)
    assert any(c.section == ("Booking", "Hotels") and "180 EUR" in c.text for c in chunks)
    py = ROOT / "corpora" / "python-docs"
    faq = load_document(py / "faq" / "programming.html", py, max_bytes=5_000_000)
    chunks = chunk_document(faq)
    hits = [c for c in chunks if "UnboundLocalError when the variable has a value" in c.text]
    assert hits and hits[0].anchor == "why-am-i-getting-an-unboundlocalerror-when-the-variable-has-a-value"
    assert hits[0].location == "faq/programming.html#why-am-i-getting-an-unboundlocalerror-when-the-variable-has-a-value"


def test_deterministic():
    py = ROOT / "corpora" / "python-docs"
    doc = load_document(py / "faq" / "library.html", py, max_bytes=5_000_000)
    assert chunk_document(doc) == chunk_document(doc)


def test_context_text_names_title_and_path():
    from slm.kb.chunking import context_text

    out = TextBuilder()
    out.heading(1, "Refunds", "refunds")
    out.heading(2, "Damaged items", "damaged")
    out.block("Send a photo within seven days of delivery to get a replacement.")
    doc = _doc_from_builder(out)
    doc = Document(**{**doc.__dict__, "title": "Refunds"})
    chunk = chunk_document(doc)[0]
    assert context_text(chunk) == "Refunds > Damaged items\n\n" + chunk.text


def test_bare_headings_join_what_follows_even_a_sibling():
    out = TextBuilder()
    out.heading(1, "A rather long page title that has no text of its own under it", "page")
    out.heading(2, "General questions", "general")  # a grouping heading, sibling of the questions
    out.heading(2, "What is it?", "what")
    out.block("It is a small tool for counting things in large collections of files.")
    out.heading(2, "Short", "short")
    out.block("Tiny.")
    out.heading(2, "Next", "next")
    out.block("A following section with enough text of its own to stand alone.")
    doc = _doc_from_builder(out)
    chunks = chunk_document(doc, chunk_chars=1200, overlap=100, min_chars=40)
    assert [c.anchor for c in chunks] == ["what", "short", "next"]
    assert chunks[0].text.startswith("A rather long page title") and "General questions" in chunks[0].text
    assert chunks[1].text == "Short\n\nTiny."  # short but with text: never merged into a sibling
