"""Cost of keeping the index current: re-ingest + index update after changing ~1% of a corpus, as a share
of a full ingest (the retraining pipeline's detect + ingest steps, real MiniLM embedder).

    nice -n 10 python bench/reingest_share.py [ROOT] [--share 0.01] [--threads 1] [--work /tmp/reingest-bench]

ROOT (default: the Python docs sample in corpora/python-docs) is copied to the work folder; the copy is
edited (a sentence added to a paragraph of each chosen file). Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.config import Settings  # noqa: E402
from slm.kb.documents import discover  # noqa: E402
from slm.kb.ingest import ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402
from slm.retraining.changes import chunk_counts, detect_changes  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "corpora" / "python-docs"
SENTENCE = " This paragraph was revised for the re-ingestion benchmark on {n}."


def edit(path: Path, n: int) -> None:
    """Add a sentence inside the middle paragraph (HTML `</p>`: the body, not the navigation), else
    after the first blank-line paragraph."""
    text = path.read_text(encoding="utf-8", errors="replace")
    ends = [m.start() for m in re.finditer("</p>", text)]
    if ends:
        at = ends[len(ends) // 2]
        text = text[:at] + SENTENCE.format(n=n) + text[at:]
    else:
        text = re.sub(r"\n\s*\n", SENTENCE.format(n=n) + "\n\n", text, count=1)
    path.write_text(text, encoding="utf-8")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=DEFAULT_ROOT, type=Path)
    parser.add_argument("--share", type=float, default=0.01, help="share of files to change")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reingest-bench"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    shutil.rmtree(args.work, ignore_errors=True)
    corpus = args.work / "docs"
    shutil.copytree(args.root, corpus)
    settings = Settings(kb=args.work / "kb")
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        kb.embedder()  # load the model outside the timings: a server or a pass has it loaded once
        full, full_s, full_cpu = timed(lambda: ingest(corpus, kb, progress=False))
        paths = discover(corpus, settings.ingest.include, settings.ingest.exclude)
        n = max(1, math.ceil(len(paths) * args.share))
        chosen = random.Random(args.seed).sample(paths, n)
        for i, path in enumerate(chosen):
            edit(path, i)

        def update():
            found = detect_changes(corpus, kb)
            return found, ingest(corpus, kb, progress=False)

        (changes, report), upd_s, upd_cpu = timed(update)
        changed_chunks, total_chunks = chunk_counts(kb.store, changes.with_text)

    print(f"corpus              {args.root} -> {corpus}")
    print(f"files               {len(paths)}; changed {n} ({n / len(paths):.1%}): "
          + ", ".join(p.relative_to(corpus).as_posix() for p in chosen))
    print(f"chunks              {total_chunks}; in changed files {changed_chunks} ({changed_chunks / total_chunks:.1%})")
    print(f"full ingest         {full_s:.2f} s wall, {full_cpu:.2f} s cpu  ({full.chunks_written} chunks embedded "
          f"{full.embedded}; stages {', '.join(f'{k} {v:.2f}s' for k, v in full.timings.items())})")
    print(f"detect + re-ingest  {upd_s:.2f} s wall, {upd_cpu:.2f} s cpu  (changes: {changes.describe()}; "
          f"{report.chunks_written} chunks written, {report.embedded} embedded; "
          f"stages {', '.join(f'{k} {v:.2f}s' for k, v in report.timings.items())})")
    print(f"share of full       {upd_s / full_s:.2%} wall, {upd_cpu / full_cpu:.2%} cpu  (target < 5%)")


if __name__ == "__main__":
    main()
