"""Retrieval hit@5 on questions whose answers sit in tables, for the Debian Reference pages as a text-layer PDF
and the same pages as a scan (rendered by pdftoppm, wrapped with no text layer, read by OCR). Real MiniLM,
hybrid retrieval (the defaults). Prints numbers only.

    flock /tmp/slm-heavy.lock timeout 900 python bench/pdf_retrieval.py [--pages 26-37] [--dpi 200]

Questions come from the package's HTML twin of each table captioned on those pages, row by row:
"Which package is <its description>?" (the description cell, the document's own words); a hit is a top-5
chunk of the right document that holds the answer cell (the package name) as a word.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pdf_evidence import REF, cut_pdf, html_tables  # noqa: E402
from slm.config import Settings  # noqa: E402
from slm.kb.ingest import ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402


def scan_of(pdf: Path, out: Path, dpi: int) -> None:
    from PIL import Image

    prefix = out.parent / "page"
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(prefix)], check=True)
    images = [Image.open(p).convert("RGB") for p in sorted(out.parent.glob("page*.png"))]
    images[0].save(str(out), save_all=True, append_images=images[1:], resolution=dpi)


def questions(text_pdf: Path) -> list[tuple[str, str]]:
    from slm.kb.loaders.pdf import load_pdf
    from slm.kb.loaders.ocr import OcrOptions

    parsed = load_pdf(text_pdf.read_bytes(), OcrOptions(ocr=False))
    truth = html_tables("en")
    out = []
    for number in dict.fromkeys(re.findall(r"Table (\d+\.\d+):", parsed.text)):
        rows = truth.get(number) or []
        if not rows or rows[0][:1] != ["package"] or "description" not in rows[0]:
            continue
        col = rows[0].index("description")
        for row in rows[1:]:
            if len(row) > col and row[0] and row[col]:
                description = row[col][0].lower() + row[col][1:]
                out.append((f"Which package is {description}?", row[0]))
    return out


def hit_at_5(kb_dir: Path, doc: Path, items: list[tuple[str, str]]) -> tuple[float, float]:
    settings = Settings(kb=kb_dir)
    with KnowledgeBase.open(kb_dir, settings, create=True) as kb:
        t0 = time.perf_counter()
        report = ingest(doc, kb, progress=False)
        seconds = time.perf_counter() - t0
        hits = 0
        for question, answer in items:
            found = kb.retriever().retrieve(question, 5)
            pattern = re.compile(rf"(?<![\w-]){re.escape(answer)}(?![\w-])")
            hits += any(pattern.search(h.chunk.text) for h in found)
        print(f"  {doc.name}: {report.chunks_written} chunks, ingest {seconds:.1f} s; "
              f"failed {[f.reason for f in report.failed]}; warnings {[w.reason for w in report.warnings]}")
    return hits / max(1, len(items)), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", default="26-37")
    parser.add_argument("--dpi", type=int, default=200)
    args = parser.parse_args()
    first, last = (int(x) for x in args.pages.split("-"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "text").mkdir()
        (work / "scan").mkdir()
        (work / "render").mkdir()
        text_pdf = work / "text" / "debian-reference.pdf"
        text_pdf.write_bytes(cut_pdf(REF / "debian-reference.en.pdf", first, last))
        scan_pdf = work / "scan" / "debian-reference-scan.pdf"
        scan_of(text_pdf, work / "render" / "scan.pdf", args.dpi)
        (work / "render" / "scan.pdf").rename(scan_pdf)
        items = questions(text_pdf)
        print(f"Debian Reference (en) pages {first}-{last}: {len(items)} questions from its tables")
        text_hit, _ = hit_at_5(work / "kb-text", text_pdf, items)
        scan_hit, scan_s = hit_at_5(work / "kb-scan", scan_pdf, items)
        print(f"hit@5 text layer: {text_hit:.1%}   scanned + OCR ({args.dpi} dpi): {scan_hit:.1%}   "
              f"(OCR ingest {(last - first + 1) / scan_s:.3f} pages/s)")


if __name__ == "__main__":
    main()
