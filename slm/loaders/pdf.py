"""PDF loader (pypdf): one text with page spans, so a chunk knows the page it starts on; the PDF's
outline (bookmarks), where it has one, gives the sections."""

from __future__ import annotations

import io
import logging
import re

from slm.errors import DocumentError
from slm.loaders.builder import Heading, Parsed, sections_from_headings
from slm.types import PageSpan

_BLANK_RUNS = re.compile(r"\n{3,}")


def _page_text(page) -> str:
    text = page.extract_text() or ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _outline(reader, items, level: int, out: list[tuple[int, str, int]]) -> None:
    for item in items:
        if isinstance(item, list):
            _outline(reader, item, level + 1, out)
            continue
        try:
            page_index = reader.get_destination_page_number(item)
        except Exception:  # a bookmark pointing nowhere is not worth failing the file for
            continue
        title = " ".join(str(getattr(item, "title", "") or "").split())
        if title and page_index is not None and page_index >= 0:
            out.append((level, title, page_index))


def load_pdf(raw: bytes) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs (even at ERROR) every oddity it recovers from; we report what matters ourselves.
    logging.getLogger("pypdf").setLevel(logging.CRITICAL)
    if not raw.lstrip().startswith(b"%PDF"):
        raise DocumentError("corrupt PDF: the file does not start with a %PDF header")
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF: remove the password before ingesting")
        page_texts = [_page_text(page) for page in reader.pages]
    except DocumentError:
        raise
    except PyPdfError as exc:
        raise DocumentError(f"corrupt PDF: {exc}") from exc
    except Exception as exc:  # pypdf on damaged input raises almost anything (zlib, NotImplementedError, ...)
        raise DocumentError(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        pages.append(PageSpan(number, offset, offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    text = "".join(parts)
    headings: list[Heading] = []
    try:
        bookmarks: list[tuple[int, str, int]] = []
        _outline(reader, reader.outline, 1, bookmarks)
    except Exception:  # a broken outline still leaves the text usable
        bookmarks = []
    for level, title, page_index in bookmarks:
        if page_index >= len(pages):
            continue
        page = pages[page_index]
        found = text.find(title, page.start, page.end)
        headings.append(Heading(level, title, None, found if found >= 0 else page.start))
    title = None
    try:
        title = (reader.metadata.title or "").strip() if reader.metadata else None
    except Exception:
        title = None
    return Parsed(
        text=text,
        title=title or (bookmarks[0][1] if bookmarks else None),
        sections=sections_from_headings(headings, text),
        pages=tuple(pages),
        metadata={"pages": str(len(pages))},
    )
