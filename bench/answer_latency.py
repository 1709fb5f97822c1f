"""CPU latency of the answerer: time to first token and tokens/s over a few questions (prints, asserts nothing).

    nice -n 10 .venv/bin/python bench/answer_latency.py --kb /tmp/pd-kb [--threads 2] [--questions FILE]
The default questions are our own (not from shared/eval), about the Python docs sample corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

QUESTIONS = [
    "What does the range() function return?",
    "How do I create a virtual environment?",
    "What is a lambda expression in Python?",
    "How do I read a file line by line?",
    "What is the difference between a list and a tuple?",
    "How do I catch an exception?",
    "What does the with statement do for files?",
    "How can I sort a list of dictionaries by a key?",
    "What is a generator?",
    "How do I format a string with variables?",
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kb", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--json", type=Path, help="write per-question rows here")
    parser.add_argument("--no-prefix-cache", action="store_true", help="prefill the whole prompt every time")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from slm.config import load_settings
    from slm.answering.service import build_answerer

    torch.set_num_threads(args.threads)
    settings = load_settings(kb=args.kb)
    settings.generation.threads = args.threads
    t0 = time.perf_counter()
    answerer = build_answerer(settings)
    if args.no_prefix_cache:
        answerer.generator.use_prefix_cache = False
    answerer.answer("warm up: what is Python?")
    load_s = time.perf_counter() - t0
    questions = args.questions.read_text().splitlines() if args.questions else QUESTIONS
    rows = []
    for q in questions:
        a = answerer.answer(q)
        t = a.timings
        decode_s = t.total_s - (t.first_token_s or t.total_s)
        rows.append({
            "question": q, "abstained": a.abstained, "cited": bool(a.citations) and not a.abstained,
            "retrieval_s": t.retrieval_s, "first_token_s": t.first_token_s, "total_s": t.total_s,
            "tokens": t.generated_tokens,
            "tok_per_s": (t.generated_tokens - 1) / decode_s if decode_s > 0 and t.generated_tokens > 1 else None,
            "answer": a.text,
        })
        print(f"{t.first_token_s or 0:6.2f}s ttft {t.total_s:6.2f}s total {t.generated_tokens:4d} tok  {q[:50]!r} -> {a.text[:90]!r}", flush=True)
    gen = [r for r in rows if r["first_token_s"] is not None]
    ttft = [r["first_token_s"] for r in gen]
    tps = [r["tok_per_s"] for r in gen if r["tok_per_s"]]
    print(f"\nmodel {answerer.model_name} threads={args.threads} load+warmup {load_s:.1f}s; {len(rows)} questions, "
          f"{len(gen)} generated, {sum(r['abstained'] for r in rows)} abstained, {sum(r['cited'] for r in rows)} cited")
    if gen:
        print(f"time to first token  p50 {statistics.median(ttft):.2f}s  p95 {pct(ttft, 0.95):.2f}s")
        print(f"retrieval            p50 {statistics.median(r['retrieval_s'] for r in rows):.2f}s")
    if tps:
        print(f"decode tokens/s      p50 {statistics.median(tps):.1f}  p5 {pct(tps, 0.05):.1f}")
    print(f"total per answer     p50 {statistics.median(r['total_s'] for r in rows):.2f}s  p95 {pct([r['total_s'] for r in rows], 0.95):.2f}s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
