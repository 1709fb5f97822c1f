"""Show a source document at a cited span, safely: looked up by chunk id in the KB (never by path),
checked against the caller's audiences, rebuilt from its chunks and rendered as escaped text."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Protocol, Sequence

from slm.access.labels import can_see
from slm.errors import AccessDenied, KnowledgeBaseError
from slm.types import Chunk

MAX_CHUNK_ID_CHARS = 1000


class SourceNotFound(KnowledgeBaseError):
    """No chunk with that id (or the caller may not see it: the two look the same from outside)."""


class ChunkLibrary(Protocol):
    """What a source view needs from a knowledge base."""

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]: ...

    def chunks_of(self, doc_id: str) -> list[Chunk]: ...


class KBChunkLibrary:
    """A ChunkLibrary over a `slm.kb.local.KnowledgeBase` (chunk lookups go through its SQLite store)."""

    def __init__(self, kb):
        self.kb = kb

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        return self.kb.get_chunks(ids)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        store = getattr(self.kb, "store", None)
        if store is not None and hasattr(store, "chunks_of"):
            return store.chunks_of(doc_id)
        return [c for c in self.kb.all_chunks() if c.doc_id == doc_id]


@dataclass(frozen=True)
class Piece:
    """A run of document text at `start` (chars into the document); `gap` marks text no chunk holds."""

    start: int
    text: str
    gap: bool = False


@dataclass(frozen=True)
class SourceView:
    """A document as far as its chunks cover it, and the chunk the link pointed at."""

    chunk: Chunk
    pieces: tuple[Piece, ...]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces if not p.gap)


def load_source(library: ChunkLibrary, chunk_id: str, audiences: frozenset[str] | None) -> SourceView:
    """The document holding `chunk_id`, if the caller may see it (audiences None: trusted caller)."""
    if not chunk_id or len(chunk_id) > MAX_CHUNK_ID_CHARS or "\x00" in chunk_id:
        raise SourceNotFound("no such source")
    found = library.get_chunks([chunk_id])
    chunk = next((c for c in found if c.id == chunk_id), None)
    if chunk is None:
        raise SourceNotFound("no such source")
    if not can_see(chunk.audiences, audiences):
        raise AccessDenied("you may not open this source")
    siblings = [c for c in library.chunks_of(chunk.doc_id) if can_see(c.audiences, audiences)]
    if not any(c.id == chunk.id for c in siblings):
        siblings.append(chunk)
    return SourceView(chunk=chunk, pieces=tuple(assemble(siblings)))


def assemble(chunks: Sequence[Chunk]) -> list[Piece]:
    """Rebuild the document text from overlapping chunks (chunk.text == doc.text[start:end]); holes become gaps."""
    pieces: list[Piece] = []
    pos = 0
    for chunk in sorted(chunks, key=lambda c: (c.start, c.end)):
        if chunk.end <= pos:
            continue
        if chunk.start > pos:
            pieces.append(Piece(start=pos, text=" … ", gap=True))
            pos = chunk.start
        text = chunk.text[pos - chunk.start :]
        if pieces and not pieces[-1].gap:  # contiguous: one run of text, so marks are not split
            last = pieces.pop()
            pieces.append(Piece(start=last.start, text=last.text + text))
        else:
            pieces.append(Piece(start=pos, text=text))
        pos = chunk.end
    return pieces


def _clamp_span(view: SourceView, span: tuple[int, int] | None) -> tuple[int, int]:
    """The cited span if it lies in the linked chunk, else the whole chunk."""
    chunk = view.chunk
    if span is None:
        return chunk.start, chunk.end
    start, end = span
    if chunk.start <= start < end <= chunk.end:
        return start, end
    return chunk.start, chunk.end


def _render_text(view: SourceView, marks: Sequence[tuple[int, int, str, str]]) -> str:
    """Escaped document text with <mark>s at document offsets; marks are (start, end, class, id), nested or disjoint."""
    cuts = sorted({b for s, e, _, _ in marks for b in (s, e)})
    out: list[str] = []
    for piece in view.pieces:
        if piece.gap:
            out.append(f'<span class="gap" title="text not in the knowledge base">{html.escape(piece.text)}</span>')
            continue
        end = piece.start + len(piece.text)
        bounds = [piece.start] + [c for c in cuts if piece.start < c < end] + [end]
        for a, b in zip(bounds, bounds[1:]):
            segment = html.escape(piece.text[a - piece.start : b - piece.start])
            for s, e, cls, ident in sorted(marks, key=lambda m: m[0] - m[1], reverse=True):
                if s <= a and b <= e:
                    # Each mark gets its id once, on its first segment, so `#cited` scrolls there.
                    id_attr = f' id="{ident}"' if ident and a == s else ""
                    segment = f'<mark class="{cls}"{id_attr}>{segment}</mark>'
            out.append(segment)
    return "".join(out)


_PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.6rem 1rem}
header h1{font-size:1.1rem;margin:0 0 .2rem}
header p{margin:0;font-size:.85rem;color:#555}
main{max-width:52rem;margin:1rem auto;padding:0 1rem}
pre.doc{white-space:pre-wrap;word-wrap:break-word;font-family:inherit;line-height:1.5;background:#fff;
 padding:1rem;border:1px solid #ddd;border-radius:6px}
mark.chunk{background:#fff3bf}
mark.cited{background:#ffd43b;outline:2px solid #f08c00}
#cited{scroll-margin-top:6rem}
.gap{color:#999}
"""

# The page runs no script at all; the CSP makes sure nothing in it could.
SOURCE_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; form-action 'none'"


def render_source_page(view: SourceView, span: tuple[int, int] | None = None, language: str = "en") -> str:
    """A complete HTML page: the document as escaped text, the chunk marked and the cited span marked
    inside it with id `cited` (open the page at `#cited` to scroll there); its own words in `language`."""
    from slm.text.messages import message

    chunk = view.chunk
    start, end = _clamp_span(view, span)
    marks = [(chunk.start, chunk.end, "chunk", "chunk")]
    if (start, end) != (chunk.start, chunk.end):
        marks.append((start, end, "cited", "cited"))
    else:
        marks = [(chunk.start, chunk.end, "chunk cited", "cited")]
    title = html.escape(chunk.title or chunk.doc_id)
    details = [html.escape(message("page_source", language, location=chunk.location))]
    if chunk.section:
        details.append(html.escape(message("page_section", language, section=" › ".join(chunk.section))))
    details.append(html.escape(message("page_characters", language, start=start, end=end)))
    jump = html.escape(message("page_jump", language))
    return (
        f"<!doctype html><html lang=\"{html.escape(language, quote=True)}\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_PAGE_CSS}</style></head><body>"
        f"<header><h1>{title}</h1><p>{' · '.join(details)} · <a href=\"#cited\">{jump}</a></p></header>"
        f"<main><pre class=\"doc\">{_render_text(view, marks)}</pre></main></body></html>"
    )
