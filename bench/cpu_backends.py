"""CPU generation backends side by side: transformers vs llama.cpp on the same questions and prompts.

    .venv/bin/python bench/cpu_backends.py --kb /tmp/cpu-kb [--run transformers:2 --run llamacpp:1 ...]
        [--adapter base|vN] [--json rows.json]

For each backend it builds the answerer the service builds (same retrieval, same prompt, greedy) and warms it
up; then it asks the questions of bench/answer_latency.py, each of them to every backend in turn (so load from
other jobs on a shared machine falls on all alike), and prints time to first token p50/p95,
decode tokens/s and total time per answer, and how many answers were word for word the same as the first
row's. Each `--run BACKEND:THREADS[:MODEL]` is a row (MODEL: e.g. a q8_0 re-export of the base; default
generation.model). No `nice`: llama.cpp's threads spin at barriers, and a niced run on a busy machine measures
the scheduler, not the backend. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

from answer_latency import QUESTIONS, pct


def build(settings, label: str, adapter: str | None) -> dict:
    from slm.answering.service import build_answerer

    t0 = time.perf_counter()
    answerer = build_answerer(settings, adapter=adapter)
    answerer.answer("warm up: what is Python?")
    return {"label": label, "model": answerer.model_name, "answerer": answerer,
            "load_s": time.perf_counter() - t0, "rows": []}


def ask(run: dict, question: str) -> None:
    a = run["answerer"].answer(question)
    t = a.timings
    decode_s = t.total_s - (t.first_token_s or t.total_s)
    run["rows"].append({
        "question": question, "abstained": a.abstained, "cited": bool(a.citations) and not a.abstained,
        "first_token_s": t.first_token_s, "total_s": t.total_s, "tokens": t.generated_tokens,
        "tok_per_s": (t.generated_tokens - 1) / decode_s if decode_s > 0 and t.generated_tokens > 1 else None,
        "answer": a.text,
    })
    print(f"  [{run['label']}] {t.first_token_s or 0:5.2f}s ttft {t.total_s:5.2f}s total {t.generated_tokens:3d} tok  "
          f"{question[:40]!r} -> {a.text[:70]!r}", flush=True)


def summary(result: dict, reference: dict | None) -> str:
    rows = result["rows"]
    gen = [r for r in rows if r["first_token_s"] is not None]
    ttft = [r["first_token_s"] for r in gen]
    tps = [r["tok_per_s"] for r in gen if r["tok_per_s"]]
    total = [r["total_s"] for r in rows]
    same = "-"
    if reference is not None:
        same = f"{sum(a['answer'] == b['answer'] for a, b in zip(rows, reference['rows']))}/{len(rows)}"
    return (f"| {result['label']} | {statistics.median(ttft):.2f} | {pct(ttft, 0.95):.2f} | "
            f"{statistics.median(tps):.1f} | {statistics.median(total):.2f} | {sum(r['tokens'] for r in rows)} | "
            f"{sum(r['cited'] for r in rows)}/{len(rows)} | {same} | {result['load_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kb", required=True)
    parser.add_argument("--run", action="append", default=[], metavar="BACKEND:THREADS[:MODEL]",
                        help="a row: transformers:2, llamacpp:1, llamacpp:1:/path/model.q8_0.gguf ... "
                             "(default: transformers:2, llamacpp:2, llamacpp:1 on generation.model)")
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--adapter", default="base", help="'base' (default), or a registry version / adapter folder")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: generation.max_new_tokens")
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from slm.config import load_settings

    settings = load_settings(kb=args.kb)
    if args.max_new_tokens:
        settings.generation.max_new_tokens = args.max_new_tokens
    questions = args.questions.read_text().splitlines() if args.questions else QUESTIONS
    results = []
    for spec in args.run or ["transformers:2", "llamacpp:2", "llamacpp:1"]:
        backend, threads, *model = spec.split(":", 2)
        model = model[0] if model else settings.generation.model
        label = f"{backend} {Path(model).name if model.endswith('.gguf') else model}, {threads} thread(s)"
        generation = dataclasses.replace(settings.generation, backend=backend, model=model, threads=int(threads))
        results.append(build(dataclasses.replace(settings, generation=generation), label, args.adapter))
    for question in questions:  # interleaved, so a burst of load from other jobs hits every backend alike
        for run in results:
            ask(run, question)
    print(f"\n{len(questions)} questions, adapter {args.adapter}, load average {os.getloadavg()[0]:.1f}, "
          f"max_new_tokens={settings.generation.max_new_tokens}, greedy\n")
    print("| backend + model | TTFT p50 s | TTFT p95 s | decode tok/s p50 | total p50 s | tokens | cited | same text as row 1 | load+warm-up s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(summary(result, results[0] if result is not results[0] else None))
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "answerer"} for r in results], indent=2))


if __name__ == "__main__":
    main()
