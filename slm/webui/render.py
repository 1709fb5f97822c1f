"""Answers and sources as Markdown/HTML for the chat: everything from documents or the model is escaped;
only links we build ourselves (to the app's own /source route) are markup."""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlencode

from slm.answering.citations import MARKER_RE, citation_for
from slm.text.messages import message
from slm.types import Answer, Chunk, Citation

SOURCE_ROUTE = "source"  # relative, so the app also works behind a proxy under a sub-path
SNIPPET_CONTEXT = 160

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def source_link(chunk_id: str, start: int | None = None, end: int | None = None) -> str:
    """The app's own link to a chunk (by id, never by path), opening at the cited span."""
    url = f"{SOURCE_ROUTE}/{quote(chunk_id, safe='')}"
    if start is not None and end is not None:
        url += "?" + urlencode({"start": start, "end": end})
    return url + "#cited"


def escape_markdown(text: str) -> str:
    """Text that Markdown shows literally: HTML escaped and Markdown syntax backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def answer_markdown(answer: Answer) -> str:
    """The answer text with each [n] turned into a link to its cited source, plus who answered; the notes
    around it in the answer's language."""
    language = answer.language
    by_marker = {c.marker: c for c in answer.citations}
    parts: list[str] = []
    pos = 0
    text = answer.text if not answer.abstained else (answer.text or message("abstain", language))
    for match in MARKER_RE.finditer(text):
        parts.append(escape_markdown(text[pos : match.start()]))
        links = []
        for number in re.split(r"\s*[,;]\s*", match.group(1).strip()):
            citation = by_marker.get(int(number)) if number.isdigit() else None
            if citation is None:
                continue
            links.append(f"[\\[{citation.marker}\\]]({source_link(citation.chunk_id, citation.start, citation.end)})")
        parts.append("".join(links))
        pos = match.end()
    parts.append(escape_markdown(text[pos:]))
    body = "".join(parts).strip()
    if answer.abstained:
        body = f"**{escape_markdown(message('abstain', language))}**"
        if answer.citations:
            body += "\n\n" + message("nearest_note", language)
    elif answer.uncited:
        body += f"\n\n*{message('uncited_warning', language)}*"
    return body + "\n\n" + model_footer(answer)


def model_label(model: str, adapter: str | None, language: str = "en") -> str:
    return f"{model or message('unknown_model', language)} · " + (
        message("with_adapter", language, adapter=adapter) if adapter else message("base_model", language))


def model_footer(answer: Answer) -> str:
    seconds = f" · {answer.timings.total_s:.1f} s" if answer.timings.total_s else ""
    return f"<sub>{html.escape(model_label(answer.model, answer.adapter, answer.language))}{seconds}</sub>"


def _snippet_html(citation: Citation, chunk: Chunk | None) -> str:
    """The cited span in its chunk with some context around it; the span itself is <mark>ed."""
    if chunk is None or not (chunk.start <= citation.start <= citation.end <= chunk.end):
        return f"<mark>{html.escape(citation.snippet)}</mark>"
    a, b = citation.start - chunk.start, citation.end - chunk.start
    lo, hi = max(0, a - SNIPPET_CONTEXT), min(len(chunk.text), b + SNIPPET_CONTEXT)
    before = ("… " if lo > 0 else "") + chunk.text[lo:a]
    after = chunk.text[b:hi] + (" …" if hi < len(chunk.text) else "")
    return f"{html.escape(before)}<mark>{html.escape(chunk.text[a:b])}</mark>{html.escape(after)}"


def _card(citation: Citation, chunk: Chunk | None, language: str) -> str:
    title = html.escape(citation.title or citation.doc_id)
    section = html.escape(" › ".join(citation.section)) if citation.section else ""
    location = html.escape(citation.source or citation.doc_id)
    if citation.page is not None:
        location += f" ({message('page_n', language, page=int(citation.page))})"
    href = html.escape(source_link(citation.chunk_id, citation.start, citation.end), quote=True)
    return (
        f'<div class="slm-source" data-doc-id="{html.escape(citation.doc_id, quote=True)}"'
        f' data-chunk-id="{html.escape(citation.chunk_id, quote=True)}">'
        f'<div class="slm-source-title">[{int(citation.marker)}] {title}</div>'
        + (f'<div class="slm-source-section">{section}</div>' if section else "")
        + f'<blockquote class="slm-snippet">{_snippet_html(citation, chunk)}</blockquote>'
        f'<a class="slm-open" href="{href}" target="_blank" rel="noopener noreferrer">'
        f'{message("open_source", language, location=location)}</a>'
        "</div>"
    )


def sources_html(answer: Answer | None, language: str | None = None) -> str:
    """Source cards for one answer (title, section, the quoted snippet with the cited span marked, a link
    opening the document there); then the passages the model read but did not cite. Headings and notes are in
    `language`, else the answer's (the empty panel's: English unless told)."""
    language = language or (answer.language if answer is not None else "en")
    if answer is None:
        return f'<div class="slm-sources"><p class="slm-muted">{html.escape(message("sources_placeholder", language))}</p></div>'
    chunks = {h.chunk.id: h.chunk for h in answer.passages}
    parts = []
    if answer.citations:
        heading = html.escape(message("nearest_sources" if answer.abstained else "sources", language))
        cards = "".join(_card(c, chunks.get(c.chunk_id), language) for c in answer.citations)
        parts.append(f'<div class="slm-cited"><h3>{heading}</h3>{cards}</div>')
    shown = {c.chunk_id for c in answer.citations}
    others = [(i, h) for i, h in enumerate(answer.passages, start=1) if h.chunk.id not in shown]
    if others and not answer.abstained:
        cards = "".join(_card(citation_for(i, h, answer.text), h.chunk, language) for i, h in others)
        if answer.citations:
            summary = html.escape(message("also_read", language, n=len(others)))
            parts.append(f'<details class="slm-read"><summary>{summary}</summary>{cards}</details>')
        else:
            parts.append(f'<div class="slm-read"><h3>{html.escape(message("passages_read", language))}</h3>{cards}</div>')
    if not parts:
        note = message("no_sources_found" if answer.abstained else "cites_no_source", language)
        parts.append(f'<p class="slm-muted">{html.escape(note)}</p>')
    return f'<div class="slm-sources">{"".join(parts)}</div>'


def question_markdown(question: str) -> str:
    return escape_markdown(question)

