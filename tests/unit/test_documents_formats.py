"""Markdown, reStructuredText, text, PDF and Word loading: sections, anchors, metadata, pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm.config import AccessSettings
from slm.kb.documents import load_document
from slm.errors import DocumentError
from tests.fixtures.builders import PDF_PAGES, make_docx, make_pdf

DOCS = Path(__file__).parents[1] / "fixtures" / "docs"


def _load(path: Path, root: Path = DOCS, **kw):
    return load_document(path, root, max_bytes=1_000_000, **kw)


def test_markdown_front_matter_headings_and_slugs():
    doc = _load(DOCS / "guide.md")
    assert doc.title == "Widget Guide"
    assert doc.metadata["owner"] == "docs-team"
    assert doc.audiences == ("support", "sales")
    assert "audience:" not in doc.text and "---" not in doc.text
    assert [(s.path, s.anchor) for s in doc.sections] == [
        (("Getting Started",), "getting-started"),
        (("Getting Started", "Configuration"), "configuration"),
        (("Getting Started", "Configuration", "Advanced Options"), "advanced-options"),
        (("Getting Started", "Troubleshooting"), "troubleshooting"),
        (("Getting Started", "Configuration"), "configuration-1"),
    ]
    assert doc.text.startswith("Intro paragraph before any heading.\n\nGetting Started\n\n")
    assert "Install the widget with pip install widget. See the site." in doc.text


def test_markdown_fenced_code_keeps_lines():
    doc = _load(DOCS / "guide.md")
    assert 'config = {\n    "colour": "red",\n\n    "size": 3,\n}' in doc.text
    assert "```" not in doc.text


def test_rst_headings_levels_anchors_and_literal_blocks():
    doc = _load(DOCS / "manual.rst")
    assert doc.title == "Widget Manual"
    assert doc.audiences == ("ops",)
    assert [(s.path, s.anchor) for s in doc.sections] == [
        (("Widget Manual",), "widget-manual"),
        (("Widget Manual", "Installation"), "installation"),
        (("Widget Manual", "Installation", "Upgrading from 1.x"), "upgrading-from-1-x"),
        (("Widget Manual", "Removal"), "removal"),
    ]
    assert "    widget install\n\n    widget check" in doc.text
    assert "=====" not in doc.text and ".. _install-target:" not in doc.text


def test_text_file_title_and_body():
    doc = _load(DOCS / "notes.txt")
    assert doc.title == "Notes on widgets"
    assert doc.text == "Notes on widgets\n\nWidgets are small.\nThey are also cheap."
    assert doc.sections == ()


def test_pdf_pages_and_outline(tmp_path):
    path = make_pdf(tmp_path / "handbook.pdf")
    doc = _load(path, tmp_path)
    assert doc.title == "Acme Handbook"
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for page, (heading, body) in zip(doc.pages, PDF_PAGES):
        page_text = doc.text[page.start : page.end]
        assert page_text.startswith(heading)
        assert body.split("\n")[0] in page_text
    assert [s.path for s in doc.sections] == [("Returns",), ("Warranty",), ("Contact",)]
    assert doc.sections[1].start == doc.pages[1].start


def test_docx_headings_lists_tables(tmp_path):
    path = make_docx(tmp_path / "travel.docx")
    doc = _load(path, tmp_path)
    assert doc.title == "Travel Guide"
    assert [s.path for s in doc.sections] == [("Booking",), ("Booking", "Hotels"), ("Expenses",)]
    assert "- Breakfast included\n- Free cancellation" in doc.text
    assert "Meal | Limit\nDinner | 40 EUR" in doc.text
    hotels = doc.sections[1]
    assert doc.text[hotels.start : hotels.end].endswith("Free cancellation")


def test_document_id_is_relative_posix_and_hash_is_stable(tmp_path):
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "x.md").write_text("# X\n\nbody text\n")
    first = _load(sub / "x.md", tmp_path)
    again = _load(sub / "x.md", tmp_path)
    assert first.id == "a/b/x.md" and first.source == "a/b/x.md"
    assert first.content_hash == again.content_hash and len(first.content_hash) == 64
    (sub / "x.md").write_text("# X\n\nother text\n")
    assert _load(sub / "x.md", tmp_path).content_hash != first.content_hash


def test_title_falls_back_to_filename(tmp_path):
    (tmp_path / "travel_rules-2024.txt").write_text("just a sentence that is long enough to not be a title line at all, and more, "
                                                   "since it keeps going past a hundred characters easily.\n")
    assert _load(tmp_path / "travel_rules-2024.txt", tmp_path).title == "Travel rules 2024"


def test_access_settings_apply(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "pay.md").write_text("# Pay\n\nPaid monthly.\n")
    access = AccessSettings(rules={"hr/**": ["HR"]}, default_audiences=["everyone"])
    assert _load(tmp_path / "hr" / "pay.md", tmp_path, access=access).audiences == ("hr",)


def test_rst_docinfo_after_title(tmp_path):
    (tmp_path / "a.rst").write_text("Payroll\n=======\n\n:audience: hr, finance\n\nBody text of payroll.\n\n:not-a-field: later\n")
    doc = _load(tmp_path / "a.rst", tmp_path)
    assert doc.audiences == ("hr", "finance")
    assert ":audience:" not in doc.text and ":not-a-field: later" in doc.text


def test_html_meta_tags_become_metadata(tmp_path):
    (tmp_path / "p.html").write_text(
        '<html><head><title>P</title><meta name="audience" content="hr"><meta name="viewport" content="x">'
        '</head><body><p>Pay day is the 25th.</p></body></html>'
    )
    doc = _load(tmp_path / "p.html", tmp_path)
    assert doc.audiences == ("hr",) and doc.metadata["audience"] == "hr" and "viewport" not in doc.metadata


def test_path_outside_root_is_a_document_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b.md").write_text("# B\n\nbody\n")
    with pytest.raises(DocumentError, match="not inside the corpus root"):
        load_document(tmp_path / "b.md", tmp_path / "a", max_bytes=1000)


def test_rst_inline_markup_is_reduced_to_text(tmp_path):
    (tmp_path / "i.rst").write_text(
        "Title\n=====\n\nCall :func:`os.listdir` or ``ls``; see `the docs <https://x.example>`_ and `Title`_.\n\n"
        "Example::\n\n    code::  stays\n\nAfter text ::\n\n    more code\n"
    )
    doc = _load(tmp_path / "i.rst", tmp_path)
    assert "Call os.listdir or ls; see the docs and Title." in doc.text
    assert "Example:\n\n    code::  stays" in doc.text
    assert "After text\n\n    more code" in doc.text
