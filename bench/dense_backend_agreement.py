"""Dense retrieval with the KB's stored vectors (e.g. the int8 ONNX default) against fp32 torch vectors of the
same model, on the same chunks and questions: does the faster backend lose retrieval on this corpus?

The fp32 side can be computed anywhere sentence-transformers runs (a GPU box embeds 20k chunks in seconds),
so the bench has three steps:

    python bench/dense_backend_agreement.py export --kb /tmp/django-kb --qa django_faq_qa.jsonl --out /tmp/agree-django
    python bench/dense_backend_agreement.py embed --model MODEL_DIR --data /tmp/agree-django [--device cuda]
    python bench/dense_backend_agreement.py score --kb /tmp/django-kb --data /tmp/agree-django

`score` prints source hit@1/hit@5/MRR@10 (chunk ranking, exact cosine search) for the stored vectors and for
the fp32 vectors, and how often their top-1 chunks agree. No numbers are asserted; this is a measurement.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

TEXTS = "texts.jsonl.gz"
QUERIES = "queries.jsonl"
CHUNK_VECTORS = "fp32_chunks.npy"
QUERY_VECTORS = "fp32_queries.npy"


def export(kb: Path, qa_files: list[Path], out: Path) -> None:
    from slm.evaluation.dataset import load_qa
    from slm.kb.ingest import index_text
    from slm.kb.store import Store

    out.mkdir(parents=True, exist_ok=True)
    store = Store(kb / "store.sqlite")
    n = 0
    with gzip.open(out / TEXTS, "wt", encoding="utf-8") as handle:
        for stored in store.iter_stored_chunks():
            c = stored.chunk
            handle.write(json.dumps({"id": c.id, "doc_id": c.doc_id, "source": c.source, "anchor": c.anchor,
                                     "embed_key": stored.embed_key, "text": index_text(c)}) + "\n")
            n += 1
    questions = [q for path in qa_files for q in load_qa(path)[0] if q.answerable and q.source]
    with (out / QUERIES).open("w", encoding="utf-8") as handle:
        for q in questions:
            handle.write(json.dumps({"question": q.question, "source": q.source}) + "\n")
    print(f"exported {n} chunks and {len(questions)} answerable questions with a gold source to {out}")


def embed(model_dir: str, data: Path, device: str | None, batch_size: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on a GPU too
    torch.backends.cudnn.allow_tf32 = False
    model = SentenceTransformer(model_dir, device=device)
    with gzip.open(data / TEXTS, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    queries = [json.loads(line)["question"] for line in (data / QUERIES).read_text(encoding="utf-8").splitlines()]
    kwargs = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    np.save(data / CHUNK_VECTORS, np.asarray(model.encode(texts, **kwargs), dtype=np.float32))
    np.save(data / QUERY_VECTORS, np.asarray(model.encode(queries, **kwargs), dtype=np.float32))
    print(f"embedded {len(texts)} chunks and {len(queries)} queries with {model_dir} on {model.device} (fp32)")


def _rank_metrics(scores: np.ndarray, rows: list[dict], queries: list[dict], k: int = 10) -> tuple[dict, list[int]]:
    """Source hit@1/hit@5/MRR@k over the chunk ranking, scored by slm eval's own rank metrics."""
    from slm.evaluation.metrics import hit_at, reciprocal_rank, source_matches

    ranks, tops = [], []
    for qi, q in enumerate(queries):
        order = np.argsort(-scores[qi])[:k]
        tops.append(int(order[0]))
        ranks.append(next((rank for rank, idx in enumerate(order, start=1)
                           if source_matches(rows[idx]["doc_id"], rows[idx]["source"], q["source"])), None))
    n = len(queries)
    return {"hit@1": sum(hit_at(r, 1) for r in ranks) / n, "hit@5": sum(hit_at(r, 5) for r in ranks) / n,
            "mrr@10": sum(reciprocal_rank(r, k) for r in ranks) / n}, tops


def score(kb: Path, data: Path) -> None:
    import dataclasses

    from slm.config import load_settings
    from slm.kb.embedding import Embedder
    from slm.kb.store import Store

    with gzip.open(data / TEXTS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    queries = [json.loads(line) for line in (data / QUERIES).read_text(encoding="utf-8").splitlines()]
    store = Store(kb / "store.sqlite")
    cached = store.cached_embeddings(r["embed_key"] for r in rows)
    stored = np.stack([cached[r["embed_key"]] for r in rows])
    # the KB's embedder (recorded at ingest) with today's default backend: what its queries are encoded with
    settings = dataclasses.replace(load_settings(None).embedder, model=store.get_meta("embedder"))
    embedder = Embedder(settings)
    stored_queries = np.stack([embedder.encode_query(q["question"]) for q in queries])
    fp32 = np.load(data / CHUNK_VECTORS)
    fp32_queries = np.load(data / QUERY_VECTORS)
    if fp32.shape != stored.shape:
        raise SystemExit(f"vector shapes differ: stored {stored.shape}, fp32 {fp32.shape} (re-export after ingest?)")
    a, tops_a = _rank_metrics(stored_queries @ stored.T, rows, queries)
    b, tops_b = _rank_metrics(fp32_queries @ fp32.T, rows, queries)
    cos = np.sum(stored * fp32, axis=1)
    label = f"stored ({settings.model}, backend {settings.backend})"
    print(f"{kb}: {len(rows)} chunks, {len(queries)} questions")
    print(f"| vectors | source hit@1 | source hit@5 | source MRR@10 |")
    print(f"|---|---|---|---|")
    for name, m in ((label, a), ("fp32 torch", b)):
        print(f"| {name} | {m['hit@1']:.3f} | {m['hit@5']:.3f} | {m['mrr@10']:.3f} |")
    agree = sum(x == y for x, y in zip(tops_a, tops_b)) / len(queries)
    print(f"top-1 chunk agreement {agree:.3f}; cosine(stored, fp32) per chunk: mean {cos.mean():.4f}, "
          f"p1 {np.percentile(cos, 1):.4f}, min {cos.min():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("export")
    p.add_argument("--kb", type=Path, required=True)
    p.add_argument("--qa", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("embed")
    p.add_argument("--model", required=True, help="a sentence-transformers folder")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p = sub.add_parser("score")
    p.add_argument("--kb", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "export":
        export(args.kb, args.qa, args.out)
    elif args.step == "embed":
        embed(args.model, args.data, args.device, args.batch_size)
    else:
        score(args.kb, args.data)


if __name__ == "__main__":
    main()
