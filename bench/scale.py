"""Scale benchmark: the index at 10k-1M chunks with a fake fast embedder (so the index, not the model, is measured).

    python bench/scale.py --chunks 10000 --chunks 100000          # whole pipeline (files -> slm.kb.ingest)
    python bench/scale.py --index-only 1000000                      # segments alone: build, query, recall

Pipeline rows: synthetic .txt files (10 chunks each, topic-structured words) ingested by `slm.kb.ingest` with
the fake embedder; then 1% of the files are edited and re-ingested (the index is updated, not rebuilt);
then queries (dense, bm25, hybrid through HybridRetriever) p50/p95; peak RSS and the KB's disk use.
Index-only rows: one segment built from synthetic vectors/texts as flat (exact) and as HNSW, query p50/p95 of
each, HNSW recall@10 against the exact top 10, BM25 p50/p95. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VOCAB = 20_000
TOPICS = 500
DIM = 384
CHUNK_WORDS = 110  # ~ 900 characters: close to ingest.chunk_chars of real text
WORD = re.compile(r"w(\d+)")


class FakeModel:
    """Bag-of-words embedder: each word a fixed random vector; a text is the normalised sum (similar texts
    get similar vectors, as with a real model). ~20 µs a text."""

    def __init__(self, dimension: int = DIM, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(VOCAB, dimension)).astype(np.float32)
        self.dimension = dimension

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = np.fromiter((int(m) for m in WORD.findall(text)), dtype=np.int64)
            if len(ids):
                out[i] = self.table[ids % VOCAB].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


class Corpus:
    """Topic-structured synthetic text: each chunk mixes words of one topic (Zipf) with common words."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.topic_words = self.rng.integers(1000, VOCAB, size=(TOPICS, 300))
        ranks = np.arange(1, 301)
        self.p = (1 / ranks) / (1 / ranks).sum()

    def chunk(self, topic: int, words: int = CHUNK_WORDS) -> str:
        own = self.topic_words[topic][self.rng.choice(300, size=words * 2 // 3, p=self.p)]
        common = self.rng.integers(0, 1000, size=words - len(own))
        mixed = np.concatenate([own, common])
        self.rng.shuffle(mixed)
        return " ".join(f"w{w}" for w in mixed)

    def query(self, topic: int) -> str:
        return " ".join(f"w{w}" for w in self.topic_words[topic][self.rng.choice(300, size=6, p=self.p)])


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def write_files(root: Path, corpus: Corpus, files: int, chunks_per_file: int) -> None:
    for f in range(files):
        topic = f % TOPICS
        folder = root / f"d{f // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{f:06d}.txt").write_text("\n\n".join(corpus.chunk(topic) for _ in range(chunks_per_file)) + "\n")


def pipeline(n_chunks: int, work: Path, queries: int, seed: int) -> dict:
    from slm.config import Settings
    from slm.kb.embedding import Embedder
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase

    per_file = 10
    files = max(1, n_chunks // per_file)
    corpus = Corpus(seed)
    root, kb_dir = work / f"docs-{n_chunks}", work / f"kb-{n_chunks}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(kb_dir, ignore_errors=True)
    t = time.perf_counter()
    write_files(root, corpus, files, per_file)
    write_s = time.perf_counter() - t
    settings = Settings()
    settings.kb = kb_dir
    settings.ingest.chunk_chars = 1000  # each paragraph of ~900 chars becomes one chunk
    settings.ingest.chunk_overlap = 0
    embedder = Embedder.from_model(FakeModel(), name="fake-bow-384", batch_size=256)
    row: dict = {"chunks_target": n_chunks, "files": files, "write_files_s": write_s}
    with KnowledgeBase.open(kb_dir, settings, create=True, embedder=embedder) as kb:
        t = time.perf_counter()
        first = ingest(root, kb, progress=False)
        row.update(ingest_s=time.perf_counter() - t, chunks=kb.store.counts()[1], ingest_stages=first.timings)
    rng = random.Random(seed)
    changed = rng.sample(sorted(root.rglob("*.txt")), max(1, files // 100))
    for path in changed:
        topic = rng.randrange(TOPICS)
        path.write_text("\n\n".join(corpus.chunk(topic) for _ in range(per_file)) + "\n")
    # A fresh process's view: the KB opened anew, so the re-ingest also loads the current index from disk.
    with KnowledgeBase.open(kb_dir, settings, embedder=embedder) as kb:
        t = time.perf_counter()
        kb.index()
        row["load_index_s"] = time.perf_counter() - t
    with KnowledgeBase.open(kb_dir, settings, embedder=embedder) as kb:
        t = time.perf_counter()
        again = ingest(root, kb, progress=False)
        row.update(reingest_s=time.perf_counter() - t, reingest_files=len(changed), reingest_stages=again.timings,
                   segments=len(kb.index().segments))
        retriever = kb.retriever()
        qs = [corpus.query(rng.randrange(TOPICS)) for _ in range(queries)]
        retriever.retrieve(qs[0], 5)  # warm up (loads the index)
        for mode in ("dense", "bm25", "hybrid"):
            times = []
            for q in qs:
                t = time.perf_counter()
                retriever.retrieve(q, 5, mode=mode)
                times.append(1000 * (time.perf_counter() - t))
            row[f"{mode}_p50_ms"], row[f"{mode}_p95_ms"] = statistics.median(times), pct(times, 0.95)
        row["dense_kind"] = ",".join(sorted({s.dense.kind for s in kb.index().segments}))
        # What every ingest paid before segments: the whole index rebuilt from the store (vectors from the
        # cache, every text re-tokenised), measured on the same KB (written as a spare generation).
        from slm.kb.ingest import _next_generation

        t = time.perf_counter()
        rows = [(s.chunk, s.embed_key) for s in kb.store.iter_stored_chunks()]
        _next_generation(kb, 999_999, None, set(), rows, DIM, kb.embedder_name)
        row["full_rebuild_index_s"] = time.perf_counter() - t
    row.update(rss_mb=rss_mb(), disk_mb=du_mb(kb_dir), docs_mb=du_mb(root))
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(kb_dir, ignore_errors=True)
    return row


def index_only(n: int, work: Path, queries: int, seed: int, kinds: list[str]) -> dict:
    """One segment of n synthetic rows per dense kind: build, query latency, recall@10 against exact."""
    from slm.kb.index.dense import DenseIndex
    from slm.kb.index.postings import Postings, SegmentedBM25

    corpus = Corpus(seed)
    model = FakeModel()
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    topics = rng.integers(0, TOPICS, size=n)
    texts = [corpus.chunk(int(tp)) for tp in topics]
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    vectors = np.concatenate([model.encode(texts[i : i + 10_000]) for i in range(0, n, 10_000)])
    embed_s = time.perf_counter() - t
    qs = [corpus.query(int(rng.integers(TOPICS))) for _ in range(queries)]
    qv = model.encode(qs)
    row: dict = {"rows": n, "generate_s": gen_s, "fake_embed_s": embed_s}
    exact = None
    for kind in kinds:
        t = time.perf_counter()
        index = DenseIndex.build(vectors, kind)
        row[f"{kind}_build_s"] = time.perf_counter() - t
        folder = Path(tempfile.mkdtemp(dir=work))
        index.save(folder)
        row[f"{kind}_disk_mb"] = du_mb(folder)
        shutil.rmtree(folder)
        times, found = [], []
        for v in qv:
            t = time.perf_counter()
            pos, _ = index.search(v, 10)
            times.append(1000 * (time.perf_counter() - t))
            found.append(pos)
        row[f"{kind}_p50_ms"], row[f"{kind}_p95_ms"] = statistics.median(times), pct(times, 0.95)
        if kind == "flat":
            exact = found
        elif exact is not None:
            row[f"{kind}_recall@10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
        del index
    t = time.perf_counter()
    postings = Postings.build(texts)
    row["bm25_build_s"] = time.perf_counter() - t
    bm25 = SegmentedBM25([postings])
    times = []
    for q in qs:
        t = time.perf_counter()
        bm25.search(q, 50)
        times.append(1000 * (time.perf_counter() - t))
    row["bm25_p50_ms"], row["bm25_p95_ms"] = statistics.median(times), pct(times, 0.95)
    row["rss_mb"] = rss_mb()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, action="append", default=[], help="pipeline run of about N chunks")
    parser.add_argument("--index-only", type=int, action="append", default=[], help="index-only run of N rows")
    parser.add_argument("--kinds", default="flat,hnsw", help="dense kinds for --index-only")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "slm-scale-bench")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)", flush=True)
    for n in args.chunks:
        r = pipeline(n, args.work, args.queries, args.seed)
        stages = lambda s: ", ".join(f"{k} {v:.1f}" for k, v in s.items())  # noqa: E731
        print(f"\n## pipeline, {r['chunks']} chunks in {r['files']} files (dense: {r['dense_kind']})\n"
              f"ingest {r['ingest_s']:.1f} s ({r['chunks'] / r['ingest_s']:.0f} chunks/s; {stages(r['ingest_stages'])})\n"
              f"re-ingest of {r['reingest_files']} changed files (1%): {r['reingest_s']:.2f} s "
              f"= {100 * r['reingest_s'] / r['ingest_s']:.1f}% of the first ingest ({stages(r['reingest_stages'])}); "
              f"{r['segments']} segments; it includes loading the current index, {r['load_index_s']:.2f} s alone; "
              f"a full index rebuild (every ingest before segments) takes {r['full_rebuild_index_s']:.1f} s\n"
              f"query ms p50/p95: dense {r['dense_p50_ms']:.1f}/{r['dense_p95_ms']:.1f}, bm25 {r['bm25_p50_ms']:.1f}/"
              f"{r['bm25_p95_ms']:.1f}, hybrid {r['hybrid_p50_ms']:.1f}/{r['hybrid_p95_ms']:.1f}\n"
              f"peak RSS {r['rss_mb']:.0f} MB; KB on disk {r['disk_mb']:.0f} MB (source files {r['docs_mb']:.0f} MB)",
              flush=True)
    for n in args.index_only:
        r = index_only(n, args.work, args.queries, args.seed, args.kinds.split(","))
        print(f"\n## index only, {n} rows\n" + "\n".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                                                         for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
