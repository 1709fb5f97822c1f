"""Embedding backends side by side on this CPU: torch fp32, ONNX fp32, ONNX int8 (embedder.backend), same model,
same chunk texts, one run; then each backend's ingest of the corpus and Python FAQ retrieval quality.

    python bench/embed_backends.py [--docs corpora/python-docs] [--qa /work/shared/eval/python_faq_qa.jsonl]
        [--backends torch,onnx,onnx-int8] [--sample 256] [--quality onnx,onnx-int8]
        [--backends torch,onnx-int8,openvino-latency,openvino-throughput] (OpenVINO: bench/openvino_model.py)

Throughput: a fixed sample of chunk texts in batches of embedder.batch_size; each batch is encoded by every
backend in turn, so load from other jobs on a shared machine falls on all alike. Wall chunks/s and chunks per
CPU-second (load-insensitive) are printed, with the ratio to torch. Quality: each backend in --quality ingests
the corpus into its own KB (end-to-end chunks/s, and its share of that backend's raw speed) and answers the
QA file's questions: page hit@5 and MRR@10 for dense, bm25 and hybrid; the last one also calibrates the hybrid
weights on 200 questions made from its chunks (slm.retrieval.fusion) and scores the FAQ again with them. Prints numbers
only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from ingest_throughput import chunk_texts  # noqa: E402
from slm.config import DEFAULT_EMBEDDER, Settings  # noqa: E402
from slm.kb.embedding import Embedder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def make_embedder(backend: str) -> Embedder:
    """MiniLM (what `auto` picks for English text) on `backend`: an embedder.backend, or `openvino-latency` /
    `openvino-throughput` (bench/openvino_model.py, the same exported ONNX file on OpenVINO; `-int8` for the
    ONNX Runtime int8 file)."""
    s = Settings().embedder
    s.model, s.backend = DEFAULT_EMBEDDER, backend
    if not backend.startswith("openvino"):
        return Embedder(s)
    from openvino_model import OpenVinoSentenceModel
    from slm.models import resolve_model

    hint = "latency" if "latency" in backend else "throughput"
    model = OpenVinoSentenceModel(Path(resolve_model(DEFAULT_EMBEDDER).location), hint=hint,
                                  max_seq_length=s.max_seq_length, int8_onnx=backend.endswith("-int8"))
    return Embedder(s, _model=model, _name=DEFAULT_EMBEDDER)


def throughput(embedders: dict[str, Embedder], texts: list[str], batch: int) -> dict[str, dict[str, float]]:
    wall = {b: 0.0 for b in embedders}
    cpu = {b: 0.0 for b in embedders}
    vectors: dict[str, list[np.ndarray]] = {b: [] for b in embedders}
    ordered = sorted(texts, key=len, reverse=True)  # as Embedder.encode batches them
    for start in range(0, len(ordered), batch):
        part = ordered[start : start + batch]
        for name, embedder in embedders.items():
            t, c = time.perf_counter(), time.process_time()
            vectors[name].append(embedder.encode(part, batch_size=batch))
            wall[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
    ref = np.concatenate(vectors[next(iter(embedders))])
    out = {}
    for name in embedders:
        v = np.concatenate(vectors[name])
        cos = (v * ref).sum(axis=1)
        out[name] = {"chunks_per_s": len(texts) / wall[name], "chunks_per_cpu_s": len(texts) / cpu[name],
                     "min_cos_to_first": float(cos.min()), "mean_cos_to_first": float(cos.mean())}
    return out


def quality(backend: str, embedder: Embedder, docs: Path, qa: Path, settings: Settings, calibrate: bool) -> dict:
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase

    questions = [json.loads(line) for line in qa.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [q for q in questions if q.get("source")]
    with tempfile.TemporaryDirectory(prefix="slm-embed-bench-") as tmp:
        settings.kb = Path(tmp) / "kb"
        with KnowledgeBase.open(settings.kb, settings, create=True, embedder=embedder) as kb:
            t = time.perf_counter()
            report = ingest(docs, kb, progress=False)
            seconds = time.perf_counter() - t
            retriever = kb.retriever()
            row = {"ingest_chunks_per_s": report.chunks_written / seconds, "chunks": report.chunks_written,
                   "embed_s": report.timings.get("embed", 0.0), "ingest_s": seconds, "questions": len(questions)}
            for mode in ("dense", "bm25", "hybrid"):
                row.update(faq_scores(retriever, questions, mode, mode))
            if calibrate:
                # Fusion weights calibrated on 200 questions made from the KB's own chunks (what
                # `slm calibrate-fusion` does), then the FAQ again with them.
                from slm.retrieval.fusion import calibrate_fusion, questions_with_gold
                from slm.retrieval.hybrid import HybridRetriever

                made = questions_with_gold(kb.all_chunks(), 200, seed=0)
                fusion = calibrate_fusion(kb, made, rrf_k=settings.retrieval.rrf_k,
                                          candidates=settings.retrieval.candidates, embedder=kb.embedder_name)
                fusion.save(kb.path)
                row["fusion"] = {"weights": fusion.weights, "heldout": {k: vars(v) for k, v in fusion.heldout.items()}}
                row.update(faq_scores(HybridRetriever(kb, settings.retrieval), questions, "hybrid", "calibrated"))
    return row


def faq_scores(retriever, questions: list[dict], mode: str, label: str) -> dict[str, float]:
    ranks = []
    for q in questions:
        hits = retriever.retrieve(q["question"], 10, mode=mode)
        ranks.append(next((i for i, h in enumerate(hits, 1) if h.chunk.doc_id == q["source"]), None))
    return {f"{label}_hit@5": sum(1 for r in ranks if r is not None and r <= 5) / len(ranks),
            f"{label}_mrr@10": sum(1 / r for r in ranks if r is not None) / len(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=REPO / "corpora/python-docs")
    parser.add_argument("--qa", type=Path, default=Path("/work/shared/eval/python_faq_qa.jsonl"))
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--quality", default="onnx,onnx-int8", help="backends to ingest + evaluate ('' = none)")
    parser.add_argument("--sample", type=int, default=256, help="chunk texts in the throughput run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = Settings()
    batch = settings.embedder.batch_size
    texts = chunk_texts(args.docs.resolve(), settings)
    sample = random.Random(args.seed).sample(texts, min(args.sample, len(texts)))
    print(f"corpus {args.docs}: {len(texts)} chunks; throughput sample {len(sample)} "
          f"({sum(map(len, sample)) / len(sample):.0f} chars each), batch {batch}, max_seq_length "
          f"{settings.embedder.max_seq_length}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    embedders, loads = {}, {}
    for backend in args.backends.split(","):
        t = time.perf_counter()
        embedders[backend] = make_embedder(backend)
        loads[backend] = time.perf_counter() - t
        embedders[backend].encode(sample[:4])  # warm-up
    rows = throughput(embedders, sample, batch)
    base = rows[next(iter(rows))]
    print("\n| backend | load s (first: export) | chunks/s (wall) | x | chunks per CPU-s | x | min cos to first | mean cos |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {loads[name]:.1f} | {r['chunks_per_s']:.1f} | {r['chunks_per_s'] / base['chunks_per_s']:.2f} | "
              f"{r['chunks_per_cpu_s']:.1f} | {r['chunks_per_cpu_s'] / base['chunks_per_cpu_s']:.2f} | "
              f"{r['min_cos_to_first']:.4f} | {r['mean_cos_to_first']:.4f} |", flush=True)
    results = {"throughput": rows, "load_s": loads, "quality": {}}
    wanted = [b for b in args.quality.split(",") if b]
    if wanted:
        print("\n| backend | ingest chunks/s | ingest / raw | dense hit@5 | MRR | bm25 hit@5 | MRR | hybrid hit@5 | MRR |")
        print("|---|---|---|---|---|---|---|---|---|")
    for backend in wanted:
        kb_settings = Settings()
        kb_settings.embedder.model = DEFAULT_EMBEDDER
        q = quality(backend, embedders[backend], args.docs.resolve(), args.qa, kb_settings, backend == wanted[-1])
        results["quality"][backend] = q
        raw = rows.get(backend, {}).get("chunks_per_s")
        share = f"{100 * q['ingest_chunks_per_s'] / raw:.0f}%" if raw else "-"
        print(f"| {backend} | {q['ingest_chunks_per_s']:.1f} | {share} | {q['dense_hit@5']:.3f} | {q['dense_mrr@10']:.3f} | "
              f"{q['bm25_hit@5']:.3f} | {q['bm25_mrr@10']:.3f} | {q['hybrid_hit@5']:.3f} | {q['hybrid_mrr@10']:.3f} |",
              flush=True)
    for backend, q in results["quality"].items():
        if "fusion" in q:
            d, b = q["fusion"]["weights"]
            held = ", ".join(f"{k} MRR {v['mrr_at_10']:.3f}" for k, v in q["fusion"]["heldout"].items())
            print(f"\nfusion calibrated on {backend}'s KB (200 generated questions, half held out): dense {d:.2f}, "
                  f"bm25 {b:.2f}; held-out generated: {held}\n"
                  f"Python FAQ hybrid: equal RRF hit@5 {q['hybrid_hit@5']:.3f} MRR {q['hybrid_mrr@10']:.3f} -> calibrated "
                  f"hit@5 {q['calibrated_hit@5']:.3f} MRR {q['calibrated_mrr@10']:.3f} (dense {q['dense_hit@5']:.3f}/"
                  f"{q['dense_mrr@10']:.3f}, bm25 {q['bm25_hit@5']:.3f}/{q['bm25_mrr@10']:.3f})")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
