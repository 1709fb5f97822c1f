"""Ingest throughput: chunks/s of `slm.kb.ingest` end to end (load, chunk, embed, index, commit) against a raw
`SentenceTransformer.encode` of the very same texts in the same run, then a re-ingest with no change.

    python bench/ingest_throughput.py [--docs corpora/python-docs/faq] [--batch-size 64]

Raw encode runs before and after the ingest (the machine is shared: the mean of the two is the baseline).
The model is loaded once, outside every timing. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.config import Settings  # noqa: E402
from slm.kb.embedding import Embedder  # noqa: E402
from slm.kb.ingest import index_text, ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402


def chunk_texts(docs: Path, settings: Settings) -> list[str]:
    from slm.kb.chunking import chunk_document
    from slm.kb.documents import discover, load_document
    from slm.errors import DocumentError

    texts = []
    for path in discover(docs, settings.ingest.include, settings.ingest.exclude):
        try:
            doc = load_document(path, docs, max_bytes=1 << 30, access=settings.access)
        except DocumentError:
            continue
        texts += [index_text(c) for c in chunk_document(doc, chunk_chars=settings.ingest.chunk_chars,
                                                        overlap=settings.ingest.chunk_overlap,
                                                        min_chars=settings.ingest.min_chunk_chars)]
    return texts


def raw_encode(model, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parents[1] / "corpora/python-docs/faq")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    settings = Settings()
    settings.embedder.batch_size = args.batch_size
    import torch

    print(f"threads: torch {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} (shared machine)")
    embedder = Embedder(settings.embedder)  # loaded once, shared by both paths
    texts = chunk_texts(args.docs.resolve(), settings)
    print(f"corpus: {args.docs} -> {len(texts)} chunks, {sum(map(len, texts)) / max(1, len(texts)):.0f} chars each on average")

    raw_before = raw_encode(embedder.model, texts, args.batch_size)
    with tempfile.TemporaryDirectory(prefix="slm-bench-") as tmp:
        settings.kb = Path(tmp) / "kb"
        with KnowledgeBase.open(settings.kb, settings, create=True, embedder=embedder) as kb:
            first = ingest(args.docs, kb, progress=False)
            again = ingest(args.docs, kb, progress=False)
    raw_after = raw_encode(embedder.model, texts, args.batch_size)
    raw = (raw_before + raw_after) / 2

    n = first.chunks_written
    print(f"raw encode:        {len(texts) / raw_before:7.1f} chunks/s before, {len(texts) / raw_after:7.1f} after "
          f"({raw_before:.1f} s / {raw_after:.1f} s)")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in first.timings.items())
    print(f"ingest end to end: {n / first.seconds:7.1f} chunks/s ({n} chunks, {first.seconds:.1f} s: {stages})")
    print(f"ingest / raw:      {100 * (n / first.seconds) / (len(texts) / raw):.1f} % of raw encode throughput")
    print(f"re-ingest, no change: {again.seconds:.2f} s = {100 * again.seconds / first.seconds:.1f} % of the first run "
          f"({again.unchanged} unchanged, {again.embedded} embedded)")


if __name__ == "__main__":
    main()
