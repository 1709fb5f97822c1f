"""Structure-aware chunking: headings first, then size. Every chunk is an exact slice of the
document text (`chunk.text == doc.text[chunk.start:chunk.end]`) and carries its section's anchor."""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

from slm.text.language import detect_language
from slm.types import Chunk, Document, Section

# A Latin sentence ends at . ! ? : ; before white space; a CJK one at 。！？； (no space follows those).
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*\s+|[。！？；][」』”’）]*")
_CJK_STOPS = "。！？；"
_CJK_CLAUSE = re.compile(r"[，、：]")
# Chinese carries about as much per character as English does per three (translations run ~3:1 in characters,
# and the e5 tokenizer gives ~1 token per Han character against ~1 per 4 English characters), so a zh
# document's chunks are sized in English-equivalent characters: chunk_chars / 3 Han-script characters.
CJK_CHAR_WEIGHT = 3


@dataclass(frozen=True)
class _Unit:
    """A run of text owned by one heading (up to the next heading of any level), or the preamble."""

    start: int
    end: int
    section: Section | None


def _units(doc: Document) -> list[_Unit]:
    text = doc.text
    by_start: dict[int, Section] = {}
    for section in sorted(doc.sections, key=lambda s: (s.start, len(s.path))):
        by_start[section.start] = section  # the deepest heading at a position wins
    starts = sorted(s for s in by_start if 0 <= s < len(text))
    bounds = ([0] if not starts or starts[0] > 0 else []) + starts + [len(text)]
    units: list[_Unit] = []
    for begin, end in zip(bounds, bounds[1:]):
        units.append(_Unit(begin, end, by_start.get(begin)))
    return units


def _is_child(parent: Section | None, child: Section | None) -> bool:
    if child is None:
        return False
    if parent is None:
        return True  # a short preamble joins the first heading's text
    return len(child.path) > len(parent.path) and child.path[: len(parent.path)] == parent.path


def _body(unit: _Unit, text: str) -> str:
    """The unit's text without its heading line."""
    own = text[unit.start : unit.end].strip()
    if unit.section is not None and own.startswith(unit.section.path[-1]):
        own = own[len(unit.section.path[-1]) :].strip()
    return own


def _merge_short(units: list[_Unit], text: str, min_chars: int) -> list[_Unit]:
    """A unit with too little text of its own (a heading straight followed by its first
    subsection, a one-line preamble) joins the next unit when that one is its child; a bare
    heading (no text at all under it) joins whatever follows. Siblings with text of their own
    are never merged, so each chunk's anchor is the right one."""
    merged: list[_Unit] = []
    pending: _Unit | None = None
    pending_bare = False
    for unit in units:
        bare = unit.section is not None and not _body(unit, text)
        if pending is not None:
            if pending_bare or _is_child(pending.section, unit.section):
                unit = _Unit(pending.start, unit.end, unit.section)
                bare = bare and pending_bare  # headings only, still
            else:
                merged.append(pending)
            pending = None
        if bare or len(text[unit.start : unit.end].strip()) < min_chars:
            pending, pending_bare = unit, bare
        else:
            merged.append(unit)
    if pending is not None:
        merged.append(pending)
    return merged


def _break_point(text: str, start: int, limit: int, floor: int) -> int:
    """Where to end a piece that starts at `start` and may not pass `limit`: the last paragraph
    break, else line break, else sentence end, else space after `floor`; else cut at `limit`."""
    window = text[floor:limit]
    for finder in (
        lambda w: w.rfind("\n\n"),
        lambda w: w.rfind("\n"),
        # after the stop itself: before the white space that follows a Latin one, after a CJK one
        lambda w: max((m.end() - (m.group()[0] not in _CJK_STOPS) for m in _SENTENCE_END.finditer(w)), default=-1),
        lambda w: w.rfind(" "),
        lambda w: max((m.end() for m in _CJK_CLAUSE.finditer(w)), default=-1),  # text without spaces
    ):
        at = finder(window)
        if at > 0:
            return floor + at
    return limit


def _overlap_start(text: str, end: int, overlap: int, lower: int) -> int:
    """Start of the next piece: about `overlap` characters before `end`, moved to a line,
    sentence or word start so no piece opens mid-word."""
    if overlap <= 0:
        return end
    target = max(lower, end - overlap)
    region = text[target:end]
    for pattern in ("\n", ". ", "。", "！", "？", " ", "，"):
        at = region.find(pattern)
        if at >= 0:
            return target + at + len(pattern)
    return end


def _outside_atomic(at: int, atomic: list[tuple[int, int]], floor: int) -> int:
    """Move a cut out of a table that fits in a chunk: to the table's start if the piece keeps some text
    before it, else to its end (the table then fits in the piece: it is no longer than a chunk)."""
    for begin, finish in atomic:
        if begin < at < finish:
            return begin if begin > floor else finish
    return at


def _split(
    text: str, start: int, end: int, chunk_chars: int, overlap: int, atomic: list[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        if end - pos <= chunk_chars:
            pieces.append((pos, end))
            break
        # Even out the pieces (no 1100 + 100 split): aim at the remaining length shared by
        # the number of pieces it needs, plus some slack to reach a good break.
        remaining = end - pos
        needed = math.ceil((remaining - overlap) / max(1, chunk_chars - overlap))
        target = math.ceil((remaining - overlap) / max(1, needed)) + overlap + chunk_chars // 10
        limit = pos + min(chunk_chars, target)
        cut = min(end, _outside_atomic(_break_point(text, pos, limit, pos + (limit - pos) // 2), atomic, pos))
        pieces.append((pos, cut))
        nxt = _overlap_start(text, cut, overlap, pos + 1)
        nxt = max(nxt, max((f for b, f in atomic if b < nxt < f), default=nxt))  # no overlap into a table's rows
        pos = nxt if nxt > pos else cut
        while pos < end and text[pos].isspace():
            pos += 1
    return pieces


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _page_of(doc: Document, offset: int) -> int | None:
    if not doc.pages:
        return None
    starts = [p.start for p in doc.pages]
    i = max(0, bisect.bisect_right(starts, offset) - 1)
    return doc.pages[i].number


def chunk_document(doc: Document, *, chunk_chars: int = 1200, overlap: int = 150, min_chars: int = 40) -> list[Chunk]:
    """Split a document: one unit per heading (heading line included), short headings merged into
    their first child, long units cut on paragraph/line/sentence boundaries with `overlap`."""
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be positive")
    if doc.language == "zh":
        chunk_chars = max(1, chunk_chars // CJK_CHAR_WEIGHT)
        overlap, min_chars = overlap // CJK_CHAR_WEIGHT, min_chars // CJK_CHAR_WEIGHT
    overlap = max(0, min(overlap, chunk_chars // 2))
    text = doc.text
    declared = bool(doc.metadata.get("language"))  # a sidecar's `language:` holds for every chunk
    chunks: list[Chunk] = []
    atomic = [(t.start, t.end) for t in doc.tables if t.end - t.start <= chunk_chars]
    for unit in _merge_short(_units(doc), text, min_chars):
        start, end = _trim(text, unit.start, unit.end)
        if start >= end:
            continue
        section = unit.section
        for piece_start, piece_end in _split(text, start, end, chunk_chars, overlap, atomic):
            piece_start, piece_end = _trim(text, piece_start, piece_end)
            if piece_start >= piece_end:
                continue
            # A chunk holding (part of) a table cites the table: its page and its box on the page.
            table = next((t for t in doc.tables if t.start < piece_end and piece_start < t.end), None)
            chunks.append(
                Chunk(
                    id=f"{doc.id}::{len(chunks):04d}",
                    doc_id=doc.id,
                    text=text[piece_start:piece_end],
                    start=piece_start,
                    end=piece_end,
                    section=section.path if section else (),
                    anchor=table.anchor if table and table.anchor else (section.anchor if section else None),
                    page=table.page if table and table.page is not None else _page_of(doc, piece_start),
                    title=doc.title,
                    source=doc.source,
                    audiences=doc.audiences,
                    language=doc.language if declared else detect_language(
                        text[piece_start:piece_end], default=doc.language
                    ),
                )
            )
    return chunks


def context_text(chunk: Chunk) -> str:
    """The chunk as an embedder or a question writer should read it: where it sits (title and
    heading path) on the first line, then its text. Not a slice: never use it for spans."""
    where = [chunk.title] if chunk.title else []
    where += [part for part in chunk.section if part != chunk.title]
    return (" > ".join(where) + "\n\n" + chunk.text) if where else chunk.text
