"""PDF loader: pdfplumber reads each page top to bottom, tables (ruled cells) become Markdown tables with
their page and bounding box; a page without a usable text layer is OCR'd (see `ocr`); pypdf gives the
outline (bookmarks) as sections, the title and the declared language. Page spans let a chunk cite its page."""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from dataclasses import dataclass

from slm.errors import DocumentError
from slm.kb.loaders.builder import Heading, Parsed, sections_from_headings
from slm.kb.loaders.limits import ExpansionLimits, check_expanded
from slm.kb.loaders.ocr import OcrOptions, ocr_page_images
from slm.kb.loaders.tables import markdown_table
from slm.types import PageSpan, TableSpan

_BLANK_RUNS = re.compile(r"\n{3,}")
# pypdf's own per-stream bounds on inflated output (75 MB each by default), lowered to ours when ours is lower.
_STREAM_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "brotli_maximum_output_length",
    "jbig2_maximum_output_length",
    "array_based_stream_maximum_output_length",
)
_CID = re.compile(r"\(cid:\d+\)")
MIN_LAYER_CHARS = 20  # a page with fewer characters than this but with an image on it is read as a scan
PARAGRAPH_GAP = 0.8  # a vertical gap above this share of the line height starts a new paragraph
# A gap wider than this share of the font size separates words. pdfplumber's default (3 points, any size)
# glued the words of justified LaTeX text together ("Nowyouareintheshell") in the Debian Reference PDF.
_TEXT_OPTIONS = {"x_tolerance_ratio": 0.15}


@dataclass(frozen=True)
class _Block:
    top: float
    text: str
    table: tuple[float, float, float, float] | None = None  # bbox when the block is a table
    gap_before: bool = False


def garbage_share(text: str) -> float:
    """Share of a text layer that is not readable text: `(cid:N)` glyphs with no Unicode mapping, U+FFFD,
    private-use and control characters (what a PDF with broken font encodings extracts to)."""
    stripped = "".join(text.split())
    if not stripped:
        return 1.0
    bad = sum(len(m) for m in _CID.findall(stripped))
    rest = _CID.sub("", stripped)
    bad += sum(1 for ch in rest if ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cc", "Cs"))
    return bad / len(stripped)


def needs_ocr(text: str, has_images: bool) -> bool:
    """No usable text layer: (almost) no text over an image (a scan), or mostly undecodable glyphs."""
    chars = len("".join(text.split()))
    if chars < MIN_LAYER_CHARS:
        return has_images
    return garbage_share(text) > 0.3


def _side_edges(page) -> list[dict]:
    """Left and right edges for tables ruled by horizontal lines only between rows (LaTeX, DocBook):
    each stack of three or more overlapping horizontal rules gets a vertical edge at both ends, so the
    lattice strategy finds its cells. Its inner column rules are the PDF's own."""
    rules = sorted((line for line in page.lines if abs(line["top"] - line["bottom"]) < 1 and line["x1"] - line["x0"] > 20),
                   key=lambda line: line["top"])
    stacks: list[dict] = []
    for line in rules:
        last = stacks[-1] if stacks else None
        if last and line["top"] - last["bottom"] < 24 and line["x0"] < last["x1"] and line["x1"] > last["x0"]:
            last.update(x0=min(last["x0"], line["x0"]), x1=max(last["x1"], line["x1"]), bottom=line["top"])
            last["rules"] += 1
        else:
            stacks.append({"x0": line["x0"], "x1": line["x1"], "top": line["top"], "bottom": line["top"], "rules": 1})
    return [
        {"x0": x, "x1": x, "top": s["top"], "bottom": s["bottom"], "width": 0, "height": s["bottom"] - s["top"],
         "object_type": "line"}
        for s in stacks if s["rules"] >= 3 for x in (s["x0"], s["x1"])
    ]


def _page_blocks(page) -> list[_Block]:
    """Text lines and tables of one page in reading order (top to bottom)."""
    tables = []
    if page.lines or page.rects:  # the lattice strategy needs ruling lines: skip the search on plain pages
        for table in page.find_tables({"explicit_vertical_lines": _side_edges(page)}):
            rows = table.extract(**_TEXT_OPTIONS)
            if len(rows) >= 2 and max(len(r) for r in rows) >= 2:
                tables.append((table.bbox, rows))
    rest = page
    for bbox, _ in tables:
        rest = rest.outside_bbox(bbox)
    blocks: list[_Block] = []
    previous_bottom = None
    for line in rest.extract_text_lines(return_chars=False, **_TEXT_OPTIONS):
        text = line["text"].strip()
        if not text:
            continue
        height = max(1.0, line["bottom"] - line["top"])
        gap = previous_bottom is not None and line["top"] - previous_bottom > PARAGRAPH_GAP * height
        blocks.append(_Block(line["top"], text, gap_before=gap))
        previous_bottom = line["bottom"]
    for bbox, rows in tables:
        text = markdown_table(rows)
        if text:
            blocks.append(_Block(bbox[1], text, table=tuple(float(v) for v in bbox)))
    return sorted(blocks, key=lambda b: b.top)


def _assemble(blocks: list[_Block], page_number: int, offset: int, tables: list[TableSpan]) -> str:
    out = ""
    for i, block in enumerate(blocks):
        if out:
            paragraph = block.table is not None or blocks[i - 1].table is not None or block.gap_before
            out += "\n\n" if paragraph else "\n"
        if block.table is not None:
            tables.append(TableSpan(offset + len(out), offset + len(out) + len(block.text), page_number, block.table))
        out += block.text
    return out


def _clean(text: str) -> str:
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


def _declared_language(reader) -> str | None:
    try:
        value = reader.trailer["/Root"].get("/Lang")
        return str(value) if value else None
    except Exception:  # a damaged catalog: no language, not a failed file
        return None


def _inflated_bytes(page) -> int:
    """What a pypdf page's content streams and form XObjects inflate to (each within pypdf's bound)."""
    from pypdf.generic import ArrayObject

    streams = []
    contents = page.get("/Contents")
    if contents is not None:
        contents = contents.get_object()
        streams += list(contents) if isinstance(contents, ArrayObject) else [contents]
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    if xobjects is not None:
        for ref in xobjects.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Form":
                streams.append(obj)
    return sum(len(s.get_object().get_data()) for s in streams)


def _check_inflation(reader, limits: ExpansionLimits) -> None:
    """pdfminer (under pdfplumber) inflates streams without a bound; pypdf, bounded per stream through
    its configuration, inflates the same page streams first and they are added up against ours."""
    import pypdf
    from pypdf.errors import LimitReachedError

    per_stream = min(limits.max_expanded_bytes, pypdf.get_configuration().zlib_maximum_output_length)
    try:
        with pypdf.apply_configuration(**{name: per_stream for name in _STREAM_LIMITS}):
            inflated = 0
            for page in reader.pages:
                inflated += _inflated_bytes(page)  # a stream shared by pages counts on each: each re-reads it
                check_expanded(inflated, limits, "PDF")
    except LimitReachedError as exc:
        raise DocumentError(
            f"PDF refused: a stream expands past {per_stream / 2**20:.0f} MB ({exc}); "
            "a decompression bomb, or raise ingest.max_expanded_mb"
        ) from exc


def load_pdf(raw: bytes, options: OcrOptions | None = None, limits: ExpansionLimits | None = None) -> Parsed:
    import pdfplumber
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    limits = limits or ExpansionLimits()

    options = options or OcrOptions()
    # pypdf and pdfminer log (even at ERROR) every oddity they recover from; we report what matters ourselves.
    for name in ("pypdf", "pdfminer"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if not raw.lstrip().startswith(b"%PDF"):
        raise DocumentError("corrupt PDF: the file does not start with a %PDF header")
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF: remove the password before ingesting")
        count = len(reader.pages)
    except DocumentError:
        raise
    except PyPdfError as exc:
        raise DocumentError(f"corrupt PDF: {exc}") from exc
    except Exception as exc:  # pypdf on damaged input raises almost anything (zlib, NotImplementedError, ...)
        raise DocumentError(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
    if count > options.pdf_max_pages:
        raise DocumentError(f"too many pages: {count} > limit {options.pdf_max_pages} (ingest.pdf_max_pages)")
    try:
        _check_inflation(reader, limits)
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - as above: damaged input
        raise DocumentError(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc
    language = options.language or _declared_language(reader)

    page_texts: list[str] = []
    page_blocks: list[list[_Block]] = []
    scanned: list[int] = []  # 0-based indexes of pages to OCR
    try:
        with pdfplumber.open(io.BytesIO(raw)) as pdf:
            for index, page in enumerate(pdf.pages):
                blocks = _page_blocks(page)
                layer = "\n".join(b.text for b in blocks)
                if options.ocr and needs_ocr(layer, bool(page.images)):
                    scanned.append(index)
                page_blocks.append(blocks)
                page_texts.append(layer)
            ocr = ocr_page_images(pdf, scanned, options, language) if scanned else None
    except DocumentError:
        raise
    except Exception as exc:  # pdfminer on damaged input raises almost anything
        raise DocumentError(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc

    parts: list[str] = []
    pages: list[PageSpan] = []
    tables: list[TableSpan] = []
    offset = 0
    for number, blocks in enumerate(page_blocks, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        if ocr is not None and (number - 1) in ocr.pages:
            page_text = _clean(ocr.pages[number - 1].text)
        else:
            page_tables: list[TableSpan] = []
            page_text = _assemble(blocks, number, offset, page_tables)
            tables += page_tables
        pages.append(PageSpan(number, offset, offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    text = "".join(parts)
    check_expanded(len(text), limits, "PDF text")

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
    metadata = {"pages": str(len(pages))}
    if tables:
        metadata["tables"] = str(len(tables))
    if ocr is not None:
        metadata.update(ocr.metadata())
    return Parsed(
        text=text,
        title=title or (bookmarks[0][1] if bookmarks else None),
        sections=sections_from_headings(headings, text),
        pages=tuple(pages),
        metadata=metadata,
        tables=tuple(tables),
    )

