"""Quickstart recipe: the whole product on the embedded default, top to bottom.

    .venv/bin/python pipelines/quickstart.py [--corpus corpora/python-docs] [--kb .slm] [--no-train] [--serve ui|api|none]

1. ingest the sample corpus into the knowledge base (incremental: a second run only touches changes);
2. calibrate the abstention threshold on questions made from the KB and generic off-topic questions;
3. one retraining pass: generate RAFT data, train a LoRA adapter, evaluate it against the served model
   on held-out questions and promote it only if it is not worse (`slm retrain --force-train`);
4. serve: the employee chat (default) or the bot API, on loopback.

Each step is the `slm` command a user would type, so this file is also a worked example of the CLI.
The training step is sized for a laptop CPU (`--max-chunks`, default 48): minutes, not hours.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RETRAIN_OK = {0, 3, 4, 5}  # nothing changed, index only, promoted, rejected (the old model keeps serving)


def slm(*args: str, env: dict[str, str], ok: set[int] = frozenset({0})) -> int:
    command = [sys.executable, "-m", "slm.cli.main", *args]
    print(f"\n$ slm {' '.join(args)}", flush=True)
    code = subprocess.call(command, env=env, cwd=REPO)
    if code not in ok:
        raise SystemExit(f"quickstart: `slm {args[0]}` failed with exit code {code}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "corpora" / "python-docs")
    parser.add_argument("--kb", type=Path, default=REPO / ".slm")
    parser.add_argument("--no-train", action="store_true", help="skip training: serve the base model")
    parser.add_argument("--max-chunks", type=int, default=48, help="chunks to generate training questions from")
    parser.add_argument("--serve", choices=["ui", "api", "none"], default="ui")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["SLM_TRAINING__MAX_CHUNKS"] = str(args.max_chunks)
    kb = ["--kb", str(args.kb)]

    slm("ingest", str(args.corpus), *kb, env=env)                                       # 1. knowledge base
    slm("calibrate", *kb, env=env)                                                       # 2. abstention threshold
    if not args.no_train:                                                                # 3. train → eval → promote?
        slm("retrain", "--root", str(args.corpus), "--force-train", *kb, env=env, ok=RETRAIN_OK)
        slm("models", "list", *kb, env=env)
    port = ["--port", str(args.port)] if args.port else []
    if args.serve == "ui":                                                               # 4. serve
        slm("ui", *kb, *port, env=env)
    elif args.serve == "api":
        print("create a key with: .venv/bin/slm keys create --name helpdesk --audience public --kb " + str(args.kb))
        slm("serve", *kb, *port, env=env)


if __name__ == "__main__":
    main()
