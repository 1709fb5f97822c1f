"""PDF tables: read as Markdown rows in reading order with their page and box, kept whole in one chunk
where they fit, the chunk citing the table's place; the text-layer checks that decide when to OCR."""

from slm.kb.chunking import chunk_document
from slm.kb.documents import load_document
from slm.kb.loaders.pdf import garbage_share, needs_ocr
from slm.kb.loaders.tables import markdown_table
from tests.fixtures.builders import TABLE_ROWS, make_table_pdf


def _load(path, root):
    return load_document(path, root, max_bytes=10**8)


def test_markdown_table_cleans_cells():
    assert markdown_table([["a", "b|c", None], ["1", "two\nlines", ""], ["", "", ""]]) == (
        "| a | b\\|c |\n| --- | --- |\n| 1 | two lines |"
    )
    assert markdown_table([[None, ""]]) == ""


def test_pdf_table_is_markdown_in_reading_order_with_page_and_box(tmp_path):
    doc = _load(make_table_pdf(tmp_path / "travel.pdf"), tmp_path)
    assert len(doc.tables) == 1 and doc.metadata["tables"] == "1"
    table = doc.tables[0]
    rows = doc.text[table.start : table.end].split("\n")
    assert rows[0] == "| City | Hotel limit | Meal limit |" and rows[1] == "| --- | --- | --- |"
    assert rows[2:] == [f"| {' | '.join(r)} |" for r in TABLE_ROWS[1:]]
    # reading order: the paragraph before, the table, the paragraph after
    assert doc.text.index("Claims need receipts") < table.start < table.end < doc.text.index("After the table")
    assert table.page == 1
    x0, top, x1, bottom = table.bbox
    assert 0 < x0 < x1 < 595 and 0 < top < bottom < 842  # inside an A4 page, in points
    assert table.anchor.startswith("page=1&viewrect=")


def test_table_ruled_between_rows_only_is_found(tmp_path):
    """LaTeX/DocBook tables (the Debian Reference's) have row rules and inner column rules, no outer sides."""
    doc = _load(make_table_pdf(tmp_path / "latex.pdf", rules="rows"), tmp_path)
    assert len(doc.tables) == 1
    rows = doc.text[doc.tables[0].start : doc.tables[0].end].split("\n")
    assert rows[2:] == [f"| {' | '.join(r)} |" for r in TABLE_ROWS[1:]]


def test_table_rows_never_split_across_chunks_where_the_table_fits(tmp_path):
    doc = _load(make_table_pdf(tmp_path / "long.pdf", filler_paragraphs=6), tmp_path)
    table = doc.tables[0]
    size = table.end - table.start
    # Chunk sizes that would put a boundary inside the table without the rule.
    for chunk_chars in range(size + 10, size + 400, 23):
        chunks = chunk_document(doc, chunk_chars=chunk_chars, overlap=60, min_chars=10)
        holding = [c for c in chunks if c.start < table.end and table.start < c.end]
        assert len(holding) >= 1
        for chunk in holding:
            assert chunk.start <= table.start and chunk.end >= table.end, (chunk_chars, chunk.text)
            assert chunk.anchor == table.anchor and chunk.page == 1
            assert chunk.text == doc.text[chunk.start : chunk.end]


def test_a_table_longer_than_a_chunk_splits_between_rows(tmp_path):
    rows = [["Item", "Code", "Limit"]] + [[f"Item {i}", f"C{i:03d}", f"{i * 7} EUR"] for i in range(60)]
    doc = _load(make_table_pdf(tmp_path / "big.pdf", rows=rows), tmp_path)
    table = max(doc.tables, key=lambda t: t.end - t.start)
    chunks = chunk_document(doc, chunk_chars=400, overlap=50, min_chars=10)
    inside = [c for c in chunks if c.start < table.end and table.start < c.end]
    assert len(inside) > 1
    for chunk in inside:
        for line in doc.text[max(chunk.start, table.start) : min(chunk.end, table.end)].split("\n"):
            assert line.startswith("|") and line.endswith("|"), line  # whole rows only


def test_when_a_page_needs_ocr():
    assert needs_ocr("", has_images=True)
    assert not needs_ocr("", has_images=False)  # a blank page, not a scan
    assert not needs_ocr("A real text layer with enough characters to read.", has_images=True)
    garbage = "(cid:12)(cid:15)(cid:3)(cid:44) " * 5 + "ab"
    assert garbage_share(garbage) > 0.9 and needs_ocr(garbage, has_images=False)
