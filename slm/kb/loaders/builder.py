"""Assembles clean document text from blocks and headings, recording every heading's span."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slm.types import PageSpan, Section, TableSpan

_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class Heading:
    """A heading found at `start` in the text (level 1 is the top)."""

    level: int
    title: str
    anchor: str | None
    start: int


@dataclass(frozen=True)
class Parsed:
    """What a loader extracted from one file."""

    text: str
    title: str | None = None
    sections: tuple[Section, ...] = ()
    pages: tuple[PageSpan, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    tables: tuple[TableSpan, ...] = ()


def sections_from_headings(headings: list[Heading], text: str) -> tuple[Section, ...]:
    """Give each heading its path (h1 > h2 > ...) and the span it owns: up to the next heading
    of the same or a higher level (its subsections included), trailing whitespace excluded."""
    ordered = sorted(headings, key=lambda h: h.start)
    sections: list[Section] = []
    stack: list[Heading] = []
    for i, heading in enumerate(ordered):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        end = len(text)
        for later in ordered[i + 1 :]:
            if later.level <= heading.level:
                end = later.start
                break
        while end > heading.start and text[end - 1].isspace():
            end -= 1
        sections.append(Section(tuple(h.title for h in stack), heading.anchor, heading.start, end))
    return tuple(sections)


class TextBuilder:
    """Blocks are separated by a blank line; consecutive `tight` blocks (list items, table rows)
    by a single newline. A heading is its text on a line of its own."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._last_tight: bool | None = None  # None: nothing written yet
        self.headings: list[Heading] = []

    def _append(self, text: str, tight: bool) -> int:
        if self._last_tight is not None:
            sep = "\n" if (tight and self._last_tight) else "\n\n"
            self._parts.append(sep)
            self._length += len(sep)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._last_tight = tight
        return start

    def block(self, text: str, *, tight: bool = False, verbatim: bool = False) -> None:
        """Add a paragraph (or, with `verbatim`, code whose inner blank lines are kept)."""
        text = text.strip("\n") if verbatim else text.strip()
        if not text.strip():
            return
        if not verbatim:
            text = _BLANK_RUNS.sub("\n\n", text)
        self._append(text.rstrip(), tight)

    def heading(self, level: int, title: str, anchor: str | None) -> None:
        title = " ".join(title.split())
        if not title:
            return
        start = self._append(title, False)
        self._last_tight = False
        self.headings.append(Heading(level, title, anchor, start))

    def build(self) -> tuple[str, tuple[Section, ...]]:
        text = "".join(self._parts)
        return text, sections_from_headings(self.headings, text)


class SlugCounter:
    """Makes anchors unique inside one document the way GitHub and docutils do: foo, foo-1, foo-2."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def unique(self, slug: str) -> str | None:
        if not slug:
            return None
        if slug not in self._seen:
            self._seen[slug] = 0
            return slug
        while True:
            self._seen[slug] += 1
            candidate = f"{slug}-{self._seen[slug]}"
            if candidate not in self._seen:
                self._seen[candidate] = 0
                return candidate
