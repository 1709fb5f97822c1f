"""What the chat renders from answers and documents: escaped text, our own links only."""

from __future__ import annotations

from markdown_it import MarkdownIt

from slm.answering.citations import parse_citations
from slm.answering.prompting import ABSTAIN_TEXT
from slm.types import Answer, Hit
from slm.webui import render
from tests.unit.ui_fakes import LEAVE, XSS

EVIL = "<script>alert('x')</script> <img src=x onerror=alert(1)> [click](javascript:alert(2)) <a href=\"javascript:alert(3)\">a</a>"


def md(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True, "linkify": False}).render(text)


def test_escape_markdown_shows_html_and_links_literally():
    out = md(render.escape_markdown(EVIL))
    assert "<script" not in out and "<img" not in out and "<a " not in out
    assert "javascript:" not in out.replace("javascript:alert", "") or 'href="javascript' not in out
    assert 'href="javascript' not in out
    # The literal text survives (as entities the browser shows as < and >).
    assert "&lt;script&gt;alert" in out and "onerror=alert(1)" in out and "[click](javascript:alert(2))" in out


def test_answer_markdown_links_markers_to_the_source_route():
    hits = (Hit(chunk=LEAVE[0], score=1.0, dense=0.9), Hit(chunk=LEAVE[1], score=0.5, dense=0.5))
    text, citations = parse_citations("You get 25 days of annual leave [1]. Carry over [2].", hits)
    answer = Answer(question="q", text=text, citations=citations, passages=hits, model="smol", adapter="v3")
    out = md(render.answer_markdown(answer))
    assert 'href="source/policies%2Fleave.md%3A%3A0000?start=' in out
    assert 'href="source/policies%2Fleave.md%3A%3A0001?start=' in out
    assert ">[1]</a>" in out and ">[2]</a>" in out
    assert "smol · adapter v3" in out


def test_answer_markdown_escapes_model_text_and_ignores_unknown_markers():
    answer = Answer(question="q", text=EVIL + " [9]", model="m")
    out = md(render.answer_markdown(answer))
    assert "<script" not in out and "<img" not in out and 'href="javascript' not in out
    assert "[9]" not in out and "source/" not in out  # a marker naming no citation is dropped, never linked
    assert "base model (no adapter)" in out


def test_abstention_is_shown_as_such_with_nearest_sources():
    hits = (Hit(chunk=LEAVE[0], score=0.1, dense=0.1),)
    from slm.answering.citations import nearest_sources

    answer = Answer(question="q", text=ABSTAIN_TEXT, abstained=True, citations=nearest_sources(hits, "leave"), passages=hits)
    chat = md(render.answer_markdown(answer))
    assert f"<strong>{ABSTAIN_TEXT}</strong>" in chat
    assert "nearest sources" in chat
    panel = render.sources_html(answer)
    assert "Nearest sources (not an answer)" in panel and "Leave policy" in panel


def test_sources_html_escapes_document_text_and_marks_the_span():
    chunk = XSS[0]
    hits = (Hit(chunk=chunk, score=1.0, dense=0.9),)
    text, citations = parse_citations("It has a script [1].", hits)
    answer = Answer(question="q", text=text, citations=citations, passages=hits)
    panel = render.sources_html(answer)
    assert "<script" not in panel and "<img" not in panel and 'href="javascript' not in panel
    assert "&lt;script&gt;" in panel and "Evil &lt;b&gt;page&lt;/b&gt;" in panel
    c = citations[0]
    marked = panel.split("<mark>")[1].split("</mark>")[0]
    import html

    assert html.unescape(marked) == chunk.text[c.start - chunk.start : c.end - chunk.start]
    assert 'href="source/evil%2Fpage.md%3A%3A0000?start=' in panel and 'target="_blank"' in panel


def test_no_answer_yet_and_uncited_answers():
    assert "appear here" in render.sources_html(None)
    uncited = Answer(question="q", text="Something.", uncited=True)
    assert "cites no source" in render.sources_html(uncited)
    assert "cites no source" in render.answer_markdown(uncited)


def test_uncited_answers_list_the_passages_the_model_read():
    hits = (Hit(chunk=LEAVE[0], score=1.0, dense=0.9), Hit(chunk=XSS[0], score=0.5, dense=0.5))
    panel = render.sources_html(Answer(question="q", text="Leave is 25 days.", uncited=True, passages=hits))
    assert "the answer cites none" in panel
    assert 'data-doc-id="policies/leave.md"' in panel and 'data-doc-id="evil/page.md"' in panel
    assert "<script" not in panel and "[2] Evil &lt;b&gt;page" in panel
    text, citations = parse_citations("Leave is 25 days [1].", hits)
    cited = render.sources_html(Answer(question="q", text=text, citations=citations, passages=hits))
    assert "<h3>Sources</h3>" in cited and "Also read, not cited (1)" in cited
