"""The small frozen records that flow between stages: documents, chunks, hits, answers, examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Section:
    """A heading in a document: its path of headings, its anchor and the span of text it owns."""

    path: tuple[str, ...]
    anchor: str | None
    start: int
    end: int


@dataclass(frozen=True)
class PageSpan:
    """Where one page of a paged document (PDF) lies in the document text."""

    number: int  # 1-based
    start: int
    end: int


@dataclass(frozen=True)
class TableSpan:
    """A table in a document's text (Markdown, one row a line), with the page and the box it was read from
    (PDF points from the page's top-left corner: x0, top, x1, bottom) so a citation can point at it."""

    start: int
    end: int
    page: int | None = None
    bbox: tuple[float, float, float, float] | None = None

    @property
    def anchor(self) -> str | None:
        """A PDF open-parameters fragment (`page=N&viewrect=left,top,width,height`) viewers scroll to."""
        if self.page is None:
            return None
        if self.bbox is None:
            return f"page={self.page}"
        x0, top, x1, bottom = (round(v) for v in self.bbox)
        return f"page={self.page}&viewrect={x0},{top},{x1 - x0},{bottom - top}"


@dataclass(frozen=True)
class Document:
    """A loaded source file. `id` is stable: the path relative to the ingested root, POSIX style."""

    id: str
    title: str
    text: str
    source: str  # path relative to the ingested root (or URI)
    content_hash: str  # sha256 of the raw bytes
    audiences: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()
    pages: tuple[PageSpan, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    language: str = ""  # en | zh | id | other (slm.text.language); "" when not known (records made before it)
    tables: tuple[TableSpan, ...] = ()  # kept whole in one chunk where they fit


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document; `text == document.text[start:end]` always holds."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    section: tuple[str, ...] = ()
    anchor: str | None = None
    page: int | None = None
    title: str = ""
    source: str = ""
    audiences: tuple[str, ...] = ()
    language: str = ""  # its own text's language, else its document's; "" in KBs ingested before languages

    @property
    def location(self) -> str:
        """Where a reader finds this chunk: `source#anchor`, or `source (page N)`."""
        loc = self.source or self.doc_id
        if self.anchor:
            loc += f"#{self.anchor}"
        if self.page is not None:
            loc += f" (page {self.page})"
        return loc


@dataclass(frozen=True)
class Hit:
    """A chunk found by retrieval, with every score that placed it (None where not computed)."""

    chunk: Chunk
    score: float  # the score the final ranking used
    dense: float | None = None
    sparse: float | None = None
    fused: float | None = None
    rerank: float | None = None


@dataclass(frozen=True)
class Citation:
    """A source an answer cites: the [marker] in the text and the exact place it points at."""

    marker: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    section: tuple[str, ...]
    anchor: str | None
    page: int | None
    start: int
    end: int
    snippet: str


@dataclass(frozen=True)
class Timings:
    retrieval_s: float = 0.0
    first_token_s: float | None = None
    total_s: float = 0.0
    generated_tokens: int = 0


@dataclass(frozen=True)
class Answer:
    """What every interface shows: the text, its citations, and whether the model abstained."""

    question: str
    text: str
    citations: tuple[Citation, ...] = ()
    passages: tuple[Hit, ...] = ()  # what the model saw, numbered 1..n in order
    abstained: bool = False
    uncited: bool = False  # answered, but no marker named a real passage
    model: str = ""
    adapter: str | None = None
    timings: Timings = field(default_factory=Timings)
    language: str = "en"  # what it is written in (generation.answer_language): the chat's notes around it follow


@dataclass(frozen=True)
class QAExample:
    """A question with its answer and the chunks that ground it (training or evaluation)."""

    question: str
    answer: str
    gold_chunk_ids: tuple[str, ...] = ()
    distractor_chunk_ids: tuple[str, ...] = ()
    source: str | None = None
    anchor: str | None = None
    answerable: bool = True
    id: str | None = None
