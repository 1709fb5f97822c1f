"""Ingest vs its encoder, one run: chunks/s of the embedder alone on a corpus's chunk texts, then of the whole
ingest pipeline (load, chunk, hash, embed, index, commit) on the same corpus, then the embedder alone again.

    python bench/ingest_overlap.py [--docs corpora/python-docs] [--prefetch N] [--onnx-threads N] [--threads-sample N]

The encoder runs before and after the ingest (the machine is shared: the mean of the two is the baseline, and
both are printed so drift shows). The model is loaded once and a tiny warm-up ingest imports the index and
loader packages, so neither is in any timing. `--prefetch` sets ingest.prefetch (0: no loader thread);
`--onnx-threads` sets ONNX Runtime's intra-op threads (0: its default, one per core); `--threads-sample N` instead
times the encoder alone with 1 thread and with the default on N texts, batch by batch in turn. Prints numbers only.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import chunk_texts  # noqa: E402
from slm.config import DEFAULT_EMBEDDER, Settings  # noqa: E402
from slm.kb.embedding import Embedder  # noqa: E402
from slm.kb.ingest import ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_embedder(settings: Settings, onnx_threads: int) -> Embedder:
    embedder = Embedder(settings.embedder)
    if onnx_threads:
        from slm.kb.embedding_onnx import OnnxSentenceModel

        model = embedder.model
        if not isinstance(model, OnnxSentenceModel):
            raise SystemExit(f"--onnx-threads needs an ONNX backend, got {type(model).__name__}")
        embedder = Embedder(settings.embedder, _name=embedder.model_name, _model=OnnxSentenceModel(
            model.folder, model.onnx_file, max_seq_length=model.max_seq_length, threads=onnx_threads))
    return embedder


def compare_threads(settings: Settings, texts: list[str]) -> None:
    """The encoder alone with 1 ONNX Runtime thread and with its default (one per core), batch by batch in turn."""
    encoders = {"1 thread": load_embedder(settings, 1), "default": load_embedder(settings, 0)}
    wall = {name: 0.0 for name in encoders}
    ordered = sorted(texts, key=len, reverse=True)
    batch = settings.embedder.batch_size
    for start in range(0, len(ordered), batch):
        for name, embedder in encoders.items():
            wall[name] += timed(lambda: embedder.encode(ordered[start : start + batch]))[0]
    print("encoder alone, ONNX threads: " + ", ".join(f"{name} {len(texts) / s:.2f} chunks/s" for name, s in wall.items())
          + f" ({len(texts)} texts; default / 1 thread = {wall['1 thread'] / wall['default']:.2f}); load {load()}",
          flush=True)


def timed(fn) -> tuple[float, float]:
    """(wall s, this process's CPU s) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_ingest(docs: Path, settings: Settings, embedder: Embedder):
    with tempfile.TemporaryDirectory(prefix="slm-overlap-") as tmp:
        settings.kb = Path(tmp) / "kb"
        with KnowledgeBase.open(settings.kb, settings, create=True, embedder=embedder) as kb:
            return ingest(docs, kb, progress=False)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=REPO / "corpora/python-docs")
    parser.add_argument("--backend", default="auto", help="embedder.backend")
    parser.add_argument("--prefetch", type=int, default=None, help="ingest.prefetch (default: the config's)")
    parser.add_argument("--onnx-threads", type=int, default=0)
    parser.add_argument("--threads-sample", type=int, default=0,
                        help="instead: the encoder alone on this many texts with 1 ONNX thread and with the default, "
                             "batch by batch in turn (what the thread split between reader and encoder rests on)")
    args = parser.parse_args()

    settings = Settings()
    settings.embedder.model, settings.embedder.backend = DEFAULT_EMBEDDER, args.backend
    if args.prefetch is not None:
        settings.ingest.prefetch = args.prefetch
    embedder = load_embedder(settings, args.onnx_threads)
    docs = args.docs.resolve()
    texts = chunk_texts(docs, settings)
    print(f"corpus {args.docs}: {len(texts)} chunks ({sum(map(len, texts)) / len(texts):.0f} chars each); embedder "
          f"{type(embedder.model).__name__} ({args.backend}), onnx threads {args.onnx_threads or 'default'}, prefetch "
          f"{getattr(settings.ingest, 'prefetch', 'n/a')}, batch {settings.embedder.batch_size}; "
          f"{os.cpu_count()} CPUs, load average {load()}", flush=True)
    if args.threads_sample:
        compare_threads(settings, texts[: args.threads_sample])
        return
    run_ingest(REPO / "corpora/tiny", Settings(embedder=settings.embedder, ingest=settings.ingest), embedder)  # warm-up

    def encode():
        embedder.encode(texts)

    before = timed(encode)
    print(f"encoder alone:   {len(texts) / before[0]:6.2f} chunks/s ({before[0]:.1f} s, CPU {before[1]:.1f} s); "
          f"load {load()}", flush=True)
    holder = {}
    pipeline = timed(lambda: holder.setdefault("report", run_ingest(docs, settings, embedder)))
    report = holder["report"]
    n = report.chunks_written
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
    print(f"ingest pipeline: {n / pipeline[0]:6.2f} chunks/s ({n} chunks, {pipeline[0]:.1f} s, CPU {pipeline[1]:.1f} s: "
          f"{stages}); load {load()}", flush=True)
    after = timed(encode)
    print(f"encoder alone:   {len(texts) / after[0]:6.2f} chunks/s ({after[0]:.1f} s, CPU {after[1]:.1f} s); "
          f"load {load()}", flush=True)
    encoder_s = (before[0] + after[0]) / 2
    share = (n / pipeline[0]) / (len(texts) / encoder_s)
    print(f"pipeline / encoder: {100 * share:.1f} % (encoder: mean of before and after; "
          f"{100 * before[0] / after[0]:.0f} % drift between them)")


if __name__ == "__main__":
    main()
