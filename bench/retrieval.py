"""Retrieval quality on the Python FAQ questions over the FULL Python docs: hit@1/5/10 and MRR of the
gold page and of the gold page#anchor, for bm25, dense, hybrid and hybrid+rerank. Prints numbers only.

    python bench/retrieval.py --docs /usr/share/doc/python3.11/html --qa /work/shared/eval/python_faq_qa.jsonl

The KB folder (--kb) is built with `slm.kb.ingest` on first use and reused (re-ingest is a no-op when
nothing changed). Embedding ~15k chunks on a shared 2-core CPU is slow; the vectors can be computed
elsewhere with the same model and seeded into the KB's embedding cache:
    --export-texts F.jsonl.gz   write the (key, text) pairs the ingest would embed, then exit
    --import-vectors F.npy ...  with --keys F.jsonl.gz: store those vectors in the cache, then ingest
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.config import load_settings  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402

DEFAULT_KB = Path.home() / ".cache" / "slm" / "bench" / "python-docs-kb"


def export_texts(docs: Path, settings, target: Path) -> None:
    from slm.kb.chunking import chunk_document
    from slm.kb.documents import discover, load_document
    from slm.errors import DocumentError
    from slm.kb.ingest import embed_key, index_text

    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    seen: dict[str, str] = {}
    for path in discover(docs, settings.ingest.include, settings.ingest.exclude):
        try:
            doc = load_document(path, docs, max_bytes=max_bytes, access=settings.access)
        except DocumentError:
            continue
        for chunk in chunk_document(doc, chunk_chars=settings.ingest.chunk_chars,
                                    overlap=settings.ingest.chunk_overlap, min_chars=settings.ingest.min_chunk_chars):
            text = index_text(chunk)
            seen.setdefault(embed_key(settings.embedder.model, text), text)
    with gzip.open(target, "wt", encoding="utf-8") as fh:
        for key, text in seen.items():
            fh.write(json.dumps({"key": key, "text": text}) + "\n")
    print(f"exported {len(seen)} texts to {target}")


def import_vectors(kb: KnowledgeBase, keys_file: Path, vector_files: list[Path]) -> None:
    import numpy as np

    with gzip.open(keys_file, "rt", encoding="utf-8") as fh:
        keys = [json.loads(line)["key"] for line in fh]
    vectors = np.concatenate([np.load(f) for f in vector_files]).astype(np.float32)
    if len(vectors) != len(keys):
        raise SystemExit(f"{len(keys)} keys but {len(vectors)} vectors")
    kb.store.put_embeddings(zip(keys, vectors))
    print(f"seeded {len(keys)} vectors into the embedding cache")


def gold_spans(docs: Path, settings, sources: set[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(page, anchor) -> the character span of that section in the page (its subsections included)."""
    from slm.kb.documents import load_document

    spans = {}
    for source in sources:
        doc = load_document(docs / source, docs, max_bytes=1 << 30, access=settings.access)
        for section in doc.sections:
            if section.anchor:
                spans.setdefault((source, section.anchor), (section.start, section.end))
    return spans


def in_gold_section(hit, source: str, anchor: str, spans) -> bool:
    c = hit.chunk
    if c.doc_id != source:
        return False
    if c.anchor == anchor:
        return True
    span = spans.get((source, anchor))
    if span is None:
        return False
    # The chunk sits inside the gold section (e.g. in one of its subsections).
    return c.start >= span[0] and c.end <= span[1] + 1


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    out = {f"hit@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in (1, 5, 10)}
    out["mrr@10"] = sum(1 / r for r in ranks if r is not None and r <= 10) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/python3.11/html"))
    parser.add_argument("--qa", type=Path, default=Path("/work/shared/eval/python_faq_qa.jsonl"))
    parser.add_argument("--kb", type=Path, default=DEFAULT_KB)
    parser.add_argument("--reranker", default=None, help="cross-encoder spec (default: retrieval.reranker)")
    parser.add_argument("--modes", default="bm25,dense,hybrid,hybrid+rerank")
    parser.add_argument("--export-texts", type=Path)
    parser.add_argument("--keys", type=Path)
    parser.add_argument("--import-vectors", type=Path, nargs="*")
    parser.add_argument("--every", type=int, default=1, help="use every Nth question (quick checks)")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args()

    settings = load_settings(kb=args.kb)
    docs = args.docs.resolve()
    if args.export_texts:
        export_texts(docs, settings, args.export_texts)
        return

    from slm.kb.ingest import ingest

    with KnowledgeBase.open(args.kb, settings, create=True) as kb:
        if args.import_vectors:
            import_vectors(kb, args.keys, args.import_vectors)
        started = time.perf_counter()
        report = ingest(docs, kb, progress=sys.stderr.isatty())
        print(f"kb: {args.kb} ({report.seen} files, {kb.store.counts()[1]} chunks; this run: {report.added} added, "
              f"{report.changed} changed, {report.unchanged} unchanged, {len(report.failed)} failed, "
              f"{report.embedded} embedded, {time.perf_counter() - started:.1f} s)")
        questions = [json.loads(line) for line in args.qa.read_text(encoding="utf-8").splitlines() if line.strip()]
        questions = [q for q in questions if q.get("source")][:: args.every]
        spans = gold_spans(docs, settings, {q["source"] for q in questions})
        retriever = kb.retriever()
        if args.reranker:
            settings.retrieval.reranker = args.reranker
        results: dict[str, dict[str, float]] = {}
        for mode in [m for m in args.modes.split(",") if m]:
            rerank = mode.endswith("+rerank")
            if rerank and not settings.retrieval.reranker:
                print(f"{mode:14} skipped: no cross-encoder configured (retrieval.reranker / --reranker)")
                continue
            base = mode.split("+")[0]
            page_ranks, anchor_ranks, seconds = [], [], []
            for q in questions:
                t = time.perf_counter()
                hits = retriever.retrieve(q["question"], 10, mode=base, rerank=rerank)
                seconds.append(time.perf_counter() - t)
                page_ranks.append(next((i for i, h in enumerate(hits, 1) if h.chunk.doc_id == q["source"]), None))
                anchor_ranks.append(next((i for i, h in enumerate(hits, 1)
                                          if in_gold_section(h, q["source"], q.get("anchor") or "", spans)), None))
            page, anchor = metrics(page_ranks), metrics(anchor_ranks)
            seconds.sort()
            results[mode] = {**{f"page_{k}": v for k, v in page.items()}, **{f"anchor_{k}": v for k, v in anchor.items()},
                             "median_ms": 1000 * seconds[len(seconds) // 2]}
        print(f"{len(questions)} questions; gold page = `source`, gold anchor = page#anchor (or a chunk inside that section)")
        header = f"{'mode':14} {'page h@1':>8} {'h@5':>6} {'h@10':>6} {'MRR':>6} | {'anchor h@1':>10} {'h@5':>6} {'h@10':>6} {'MRR':>6} | {'ms/q':>6}"
        print(header)
        for mode, r in results.items():
            print(f"{mode:14} {r['page_hit@1']:8.3f} {r['page_hit@5']:6.3f} {r['page_hit@10']:6.3f} {r['page_mrr@10']:6.3f} | "
                  f"{r['anchor_hit@1']:10.3f} {r['anchor_hit@5']:6.3f} {r['anchor_hit@10']:6.3f} {r['anchor_mrr@10']:6.3f} | "
                  f"{r['median_ms']:6.0f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
