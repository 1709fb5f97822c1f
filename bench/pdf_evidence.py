"""PDF evidence on documents nobody on the team wrote: the Debian Reference (Debian's debian-reference-en,
-id, -zh-cn packages ship it as PDF and HTML, same version). Prints numbers only; asserts nothing.

    apt-get install debian-reference-en debian-reference-id debian-reference-zh-cn poppler-utils tesseract-ocr \
        tesseract-ocr-chi-sim tesseract-ocr-ind
    flock /tmp/slm-heavy.lock timeout 900 python bench/pdf_evidence.py [--pages 26-60] [--ocr-pages 2]

1. Tables: pages of the English PDF cut into a small PDF and read by slm's loader; every table whose caption
   ("Table 1.4: …") is on those pages is compared with the same table in the package's HTML (`Table 1.4. …`):
   the share of its non-empty cells found, exactly (whitespace collapsed), among the cells of the Markdown
   tables extracted on the caption's page and the page before.
2. OCR: pages of each language's PDF rendered to PNG at 300 dpi (pdftoppm) and wrapped as a PDF with no text
   layer (a scan); slm reads it by OCR, with the language declared (as a sidecar's `language:` would) and
   undeclared (OSD script detection, else ingest.ocr_languages=eng). Character accuracy = 1 - edit distance /
   reference length over non-whitespace characters, the reference being the page's own text layer.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.kb.loaders.ocr import OcrOptions, confidence_of  # noqa: E402
from slm.kb.loaders.pdf import load_pdf  # noqa: E402

REF = Path("/usr/share/debian-reference")
LANGUAGES = {"en": "en", "id": "id", "zh-cn": "zh-CN"}
_SPACES = re.compile(r"\s+")


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one numpy row per character of `a` (insertions by a running minimum)."""
    if not a or not b:
        return len(a) + len(b)
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    ramp = np.arange(len(b) + 1)
    prev = ramp.copy()
    for i, ch in enumerate(a, start=1):
        cost = (codes != ord(ch)).astype(np.int64)
        row = np.empty(len(b) + 1, dtype=np.int64)
        row[0] = i
        row[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        prev = np.minimum.accumulate(row - ramp) + ramp
    return int(prev[-1])


def cut_pdf(source: Path, first: int, last: int) -> bytes:
    from pypdf import PdfReader, PdfWriter

    reader, writer = PdfReader(str(source)), PdfWriter()
    for index in range(first - 1, last):
        writer.add_page(reader.pages[index])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def norm(cell: str) -> str:
    return _SPACES.sub(" ", cell.replace("\\|", "|")).strip()


def html_tables(language: str) -> dict[str, list[list[str]]]:
    from lxml import etree

    tables: dict[str, list[list[str]]] = {}
    for path in sorted(REF.glob(f"*.{language}.html")):
        root = etree.parse(str(path), etree.HTMLParser()).getroot()
        for div in root.xpath('//div[@class="table"]'):
            title = " ".join("".join(div.xpath('./p[@class="title"]//text()')).split())
            match = re.search(r"(\d+\.\d+)", title)
            if not match:
                continue
            rows = [[norm("".join(cell.itertext())) for cell in tr.xpath("./th|./td")] for tr in div.iter("tr")]
            tables[match.group(1)] = [r for r in rows if any(r)]
    return tables


def table_cells(parsed, page: int) -> Counter:
    cells: Counter = Counter()
    for table in parsed.tables:
        if table.page in (page, page - 1):
            for line in parsed.text[table.start : table.end].split("\n"):
                if set(line) <= set("|- "):
                    continue  # the header rule
                for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1]):
                    cells[norm(cell)] += 1
    return cells


def bench_tables(first: int, last: int) -> None:
    raw = cut_pdf(REF / "debian-reference.en.pdf", first, last)
    t0 = time.perf_counter()
    parsed = load_pdf(raw, OcrOptions(ocr=False))
    seconds = time.perf_counter() - t0
    truth = html_tables("en")
    found_total = cells_total = 0
    captions = 0
    per_table = []
    for page in parsed.pages:
        for match in re.finditer(r"Table (\d+\.\d+):", parsed.text[page.start : page.end]):
            number = match.group(1)
            if number not in truth:
                continue
            captions += 1
            available = table_cells(parsed, page.number)
            want = [c for row in truth[number] for c in row if c]
            hits = 0
            for cell in want:
                if available[cell] > 0:
                    available[cell] -= 1
                    hits += 1
            per_table.append((number, hits, len(want)))
            found_total += hits
            cells_total += len(want)
    pages = last - first + 1
    print(f"tables: Debian Reference (en) pages {first}-{last} ({pages} pages, {len(raw) / 1e3:.0f} kB): "
          f"{len(parsed.tables)} Markdown tables extracted, {captions} captioned tables with an HTML twin")
    print(f"  cells recovered exactly: {found_total}/{cells_total} = {found_total / max(1, cells_total):.1%}")
    print("  per table: " + ", ".join(f"{n} {h}/{w}" for n, h, w in per_table))
    print(f"  text layer + tables: {seconds:.1f} s = {pages / seconds:.2f} pages/s")


def dense_pages(pdf_path: Path, count: int, start: int) -> list[int]:
    import pdfplumber

    chosen = []
    with pdfplumber.open(str(pdf_path)) as pdf:
        index = start
        while len(chosen) < count and index < len(pdf.pages):
            text = pdf.pages[index].extract_text(x_tolerance_ratio=0.15) or ""
            if len("".join(text.split())) > 1200 and not pdf.pages[index].images:
                chosen.append(index + 1)
            index += 7  # spread over the book
    return chosen


def layer_text(pdf_path: Path, page: int) -> str:
    import pdfplumber

    with pdfplumber.open(str(pdf_path)) as pdf:
        return pdf.pages[page - 1].extract_text(x_tolerance_ratio=0.15) or ""


def scanned(pdf_path: Path, page: int, work: Path, dpi: int = 300) -> bytes:
    from PIL import Image

    prefix = work / f"{pdf_path.stem}-{page}"
    subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", "-singlefile",
                    str(pdf_path), str(prefix)], check=True)
    image = Image.open(f"{prefix}.png").convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PDF", resolution=dpi)
    return out.getvalue()


def bench_ocr(count: int, start: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for suffix, declared in LANGUAGES.items():
            pdf_path = REF / f"debian-reference.{suffix}.pdf"
            pages = dense_pages(pdf_path, count, start)
            for mode, language in (("declared", declared), ("undeclared", None)):
                distance = length = 0
                seconds = 0.0
                confidences = []
                used = set()
                for page in pages:
                    reference = "".join(layer_text(pdf_path, page).split())
                    scan = scanned(pdf_path, page, work)
                    t0 = time.perf_counter()
                    parsed = load_pdf(scan, OcrOptions(language=language))
                    seconds += time.perf_counter() - t0
                    got = "".join(parsed.text.split())
                    distance += levenshtein(got, reference)
                    length += len(reference)
                    confidences.append(confidence_of(parsed.metadata)["1"])
                    used.add(parsed.metadata["ocr_language"])
                print(f"ocr {suffix:5} {mode:10} pages {pages} as {'+'.join(sorted(used))}: "
                      f"character accuracy {1 - distance / max(1, length):.1%} ({length} chars), "
                      f"mean confidence {sum(confidences) / len(confidences):.1f}, "
                      f"{seconds / len(pages):.1f} s/page = {len(pages) / seconds:.3f} pages/s (render excluded)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", default="26-60", help="page range of the English PDF for the table check")
    parser.add_argument("--ocr-pages", type=int, default=2, help="pages per language for OCR")
    parser.add_argument("--ocr-start", type=int, default=29, help="first page index to look for dense pages")
    parser.add_argument("--skip", choices=["tables", "ocr"], default=None)
    args = parser.parse_args()
    first, last = (int(x) for x in args.pages.split("-"))
    if args.skip != "tables":
        bench_tables(first, last)
    if args.skip != "ocr":
        bench_ocr(args.ocr_pages, args.ocr_start)


if __name__ == "__main__":
    main()
