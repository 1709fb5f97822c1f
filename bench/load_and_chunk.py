"""Load and chunk a whole folder (default: all of the Python 3.11 HTML docs) and print throughput.

    python bench/load_and_chunk.py [ROOT] [--chunk-chars 1200] [--overlap 150] [--min-chars 40]

Prints numbers only; asserts no timings. Parsing must stay far cheaper than embedding.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.kb.chunking import chunk_document  # noqa: E402
from slm.config import IngestSettings  # noqa: E402
from slm.kb.documents import discover, load_document  # noqa: E402
from slm.errors import DocumentError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="/usr/share/doc/python3.11/html", type=Path)
    parser.add_argument("--chunk-chars", type=int, default=1200)
    parser.add_argument("--overlap", type=int, default=150)
    parser.add_argument("--min-chars", type=int, default=40)
    args = parser.parse_args()
    ingest = IngestSettings()

    started = time.perf_counter()
    cpu_started = time.process_time()
    paths = discover(args.root, ingest.include, ingest.exclude)
    discovered = time.perf_counter()
    load_s = chunk_s = 0.0
    sizes: list[int] = []
    doc_chars = raw_bytes = docs = 0
    failures: list[tuple[str, str]] = []
    for path in paths:
        t0 = time.perf_counter()
        try:
            doc = load_document(path, args.root, max_bytes=int(ingest.max_file_mb * 1e6))
        except DocumentError as exc:
            failures.append((path.relative_to(args.root).as_posix(), str(exc)))
            continue
        t1 = time.perf_counter()
        chunks = chunk_document(doc, chunk_chars=args.chunk_chars, overlap=args.overlap, min_chars=args.min_chars)
        t2 = time.perf_counter()
        load_s += t1 - t0
        chunk_s += t2 - t1
        docs += 1
        raw_bytes += path.stat().st_size
        doc_chars += len(doc.text)
        sizes.extend(len(c.text) for c in chunks)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    print(f"root                {args.root}")
    print(f"files found         {len(paths)}  (discover {discovered - started:.2f} s)")
    print(f"documents loaded    {docs}  ({raw_bytes / 1e6:.1f} MB raw -> {doc_chars / 1e6:.1f} M chars of text)")
    print(f"load                {load_s:.2f} s  ({docs / max(load_s, 1e-9):.0f} docs/s, {raw_bytes / 1e6 / max(load_s, 1e-9):.1f} MB/s)")
    print(f"chunk               {chunk_s:.2f} s")
    print(f"total               {total:.2f} s wall  ({docs / max(total, 1e-9):.0f} docs/s end to end)")
    print(f"cpu                 {cpu:.2f} s  ({docs / max(cpu, 1e-9):.0f} docs/s of one core; wall time grows on a busy machine)")
    if sizes:
        print(f"chunks              {len(sizes)}  ({len(sizes) / max(total, 1e-9):.0f} chunks/s)")
        print(f"chunk chars         mean {statistics.mean(sizes):.0f}, median {statistics.median(sizes):.0f}, "
              f"min {min(sizes)}, max {max(sizes)}")
    print(f"failures            {len(failures)}")
    for reason, count in Counter(reason for _, reason in failures).most_common():
        examples = ", ".join(p for p, r in failures if r == reason)[:200]
        print(f"  {count:4d}  {reason}  [{examples}]")


if __name__ == "__main__":
    main()
