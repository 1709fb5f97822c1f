"""HTML loading: main body only, boilerplate gone, headings with Sphinx-style anchors, code intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm.kb.documents import load_document

DOCS = Path(__file__).parents[1] / "fixtures" / "docs"
PY_DOCS = Path(__file__).parents[2] / "corpora" / "python-docs"


def _load(name: str):
    return load_document(DOCS / name, DOCS, max_bytes=1_000_000)


def test_sphinx_page_keeps_body_and_drops_navigation():
    doc = _load("sphinx_page.html")
    assert doc.id == "sphinx_page.html" and doc.source == "sphinx_page.html"
    assert doc.title == "Widget FAQ"
    for gone in ("Navigation", "Sidebar link text", "Footer text", "¶", "jquery", "color: black", "Contents"):
        assert gone not in doc.text
    assert doc.text.startswith("Widget FAQ\n\nInstalling\n\nHow do I install a widget?\n\n")
    assert "Run the installer and follow the prompts." in doc.text  # inline whitespace collapsed
    assert "Yes: run widget --remove." in doc.text


def test_code_blocks_keep_newlines_and_blank_lines():
    doc = _load("sphinx_page.html")
    assert "import widget\n\nwidget.install()" in doc.text


def test_sphinx_sections_take_the_enclosing_section_id():
    doc = _load("sphinx_page.html")
    by_anchor = {s.anchor: s for s in doc.sections}
    assert list(by_anchor) == [
        "widget-faq",
        "installing",
        "how-do-i-install-a-widget",  # the section id, not the <span id="faq-install"> beside the heading
        "can-i-uninstall-it",
        "old-style-section",  # <div class="section" id=...>
    ]
    install = by_anchor["how-do-i-install-a-widget"]
    assert install.path == ("Widget FAQ", "Installing", "How do I install a widget?")
    owned = doc.text[install.start : install.end]
    assert owned.startswith("How do I install a widget?") and owned.endswith("It takes about a minute.")
    parent = by_anchor["installing"]
    assert parent.start < install.start and parent.end >= by_anchor["can-i-uninstall-it"].end
    assert by_anchor["old-style-section"].path == ("Widget FAQ", "Old style section")


def test_list_items_are_lines():
    doc = _load("sphinx_page.html")
    assert "Settings are kept.\nLogs are deleted." in doc.text


def test_plain_html_article_heading_ids_br_and_tables():
    doc = _load("plain_article.htm")
    assert doc.title == "Plain"
    assert "Site header text" not in doc.text and "Aside text" not in doc.text and "Footer text" not in doc.text
    assert "First line\nsecond line" in doc.text
    assert "Key | Value\ncolour | red" in doc.text
    assert [(s.path, s.anchor) for s in doc.sections] == [
        (("Plain article",), "intro"),
        (("Plain article", "Details"), "details"),
    ]


def test_real_python_faq_page_anchor_matches_gold_style():
    doc = load_document(PY_DOCS / "faq" / "programming.html", PY_DOCS, max_bytes=5_000_000)
    assert doc.id == "faq/programming.html"
    assert doc.title == "Programming FAQ"
    anchors = {s.anchor for s in doc.sections}
    assert "why-am-i-getting-an-unboundlocalerror-when-the-variable-has-a-value" in anchors
    assert "faq-unboundlocalerror" not in anchors
    assert ">>> x = 10\n>>> def bar():\n...     print(x)" in doc.text


@pytest.mark.parametrize("name", ["faq/design.html", "library/re.html", "tutorial/controlflow.html"])
def test_every_section_span_starts_with_its_heading(name):
    doc = load_document(PY_DOCS / name, PY_DOCS, max_bytes=5_000_000)
    assert doc.sections
    for section in doc.sections:
        assert doc.text[section.start :].startswith(section.path[-1])
        assert section.start < section.end <= len(doc.text)


def test_article_header_is_kept_but_site_header_is_not(tmp_path):
    (tmp_path / "a.html").write_text(
        "<html><body><header><h1>Site banner</h1></header><main><article>"
        "<header><h1 id='t'>Article title</h1><p>By A. Writer</p></header>"
        "<p>Body&nbsp;text  here.</p></article></main><footer>Site footer</footer></body></html>"
    )
    doc = load_document(tmp_path / "a.html", tmp_path, max_bytes=10_000)
    assert doc.text == "Article title\n\nBy A. Writer\n\nBody text here."
    assert [(s.path, s.anchor) for s in doc.sections] == [(("Article title",), "t")]
    assert doc.title == "Article title"


def test_body_fallback_drops_site_header(tmp_path):
    (tmp_path / "b.html").write_text(
        "<html><body><header><p>Logo and menu</p></header><h2>Only section</h2><p>Text.</p></body></html>"
    )
    doc = load_document(tmp_path / "b.html", tmp_path, max_bytes=10_000)
    assert doc.text == "Only section\n\nText."
    assert doc.title == "Only section"


DOCBOOK_PAGE = """<html><head><title>A.6. Knoppix</title></head><body>
<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="3">A.6. Knoppix</th></tr>
<tr><td><a accesskey="p" href="a5.html">Prev</a> </td><th>Appendix A. Derivatives</th>
<td> <a accesskey="n" href="a7.html">Next</a></td></tr></table><hr/></div>
<div class="section"><h2 id="knoppix">A.6. Knoppix</h2><p>Knoppix is a live CD. {body}</p>
<table><tr><td><a href="x.html">x</a></td><td><a href="y.html">y</a></td></tr></table></div>
<div class="navfooter"><hr/><table width="100%" summary="Navigation footer">
<tr><td><a accesskey="p" href="a5.html">Prev</a> </td><td><a accesskey="u" href="apa.html">Up</a></td>
<td> <a accesskey="n" href="a7.html">Next</a></td></tr>
<tr><td>A.5. Aptosid and Siduction </td><td><a accesskey="h" href="index.html">Home</a></td>
<td> A.7. Linux Mint</td></tr></table></div></body></html>"""


def test_generator_navigation_is_dropped_by_structure_not_class(tmp_path):
    """DocBook's Prev/Up/Home/Next bars (access keys, short text) go, whatever their class; content stays."""
    page = DOCBOOK_PAGE.format(body="It boots from a USB stick.").replace("navheader", "n1").replace("navfooter", "n2")
    (tmp_path / "a6.html").write_text(page)
    doc = load_document(tmp_path / "a6.html", tmp_path, max_bytes=10_000)
    assert doc.text.startswith("A.6. Knoppix\n\nKnoppix is a live CD. It boots from a USB stick.")
    for nav in ("Prev", "Next", "Home", "Up", "Aptosid", "Linux Mint", "Appendix A"):
        assert nav not in doc.text, nav
    assert "x | y" in doc.text  # a table of ordinary links is content


def test_a_long_block_with_access_keys_is_content(tmp_path):
    """Only a block of little text is taken for a navigation bar: a long one with access keys is kept."""
    long_text = "Words of the page's own content. " * 12
    page = (f"<html><body><div><p>{long_text}</p><a accesskey='p' href='a.html'>Back</a> "
            "<a rel='next' href='b.html'>On</a></div></body></html>")
    (tmp_path / "k.html").write_text(page)
    doc = load_document(tmp_path / "k.html", tmp_path, max_bytes=10_000)
    assert "Back" in doc.text and "own content" in doc.text


def test_the_headings_permalink_names_its_anchor_over_the_section_id(tmp_path):
    # Django's Sphinx: the section is `s-x`, the label span and the permalink say `x` (what links and gold use)
    page = tmp_path / "admin.html"
    page.write_text(
        '<html><body><div class="body"><div class="section" id="s-faq-the-admin"><h1>FAQ: The admin</h1>'
        '<div class="section" id="s-how-do-i-set-it"><span id="how-do-i-set-it"></span>'
        '<h2>How do I set it?<a class="headerlink" href="#how-do-i-set-it" title="Permalink">\u00b6</a></h2>'
        '<p>Use the save_model hook of the admin class to set the field.</p></div></div></div></body></html>',
        encoding="utf-8",
    )
    doc = load_document(page, tmp_path, max_bytes=100_000)
    assert [s.anchor for s in doc.sections] == ["s-faq-the-admin", "how-do-i-set-it"]
