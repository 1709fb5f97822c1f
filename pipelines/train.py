"""Recipe: train an adapter on a knowledge base, then (optionally) gate it against the served version.

    python -m pipelines.train --kb .slm --eval-qa eval.jsonl --exclude-docs 'faq/*' --gate

Every step lives in slm/ (slm.training.recipe, slm.training.gating); this file only calls them in order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slm.config import load_settings
from slm.training.recipe import TrainOptions, TrainReport, run_training


def train(kb: Path, *, config: Path | None = None, eval_qa: tuple[Path, ...] = (), exclude_docs: tuple[str, ...] = (),
          max_chunks: int | None = None, epochs: float | None = None, gate: bool = False,
          promote: bool = False, resume: bool = False) -> TrainReport:
    settings = load_settings(config_file=config, kb=kb,                       # 1. settings
                             overrides={"training.max_chunks": max_chunks, "training.epochs": epochs})
    options = TrainOptions(eval_qa=eval_qa, exclude_docs=exclude_docs,        # 2. what this run does
                           gate=gate, promote=promote, resume=resume)
    return run_training(settings, options)                                    # 3. data → RAFT → LoRA → registry (→ gate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--eval-qa", type=Path, action="append", default=[])
    parser.add_argument("--exclude-docs", action="append", default=[])
    parser.add_argument("--max-chunks", type=int)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--gate", action="store_true")
    parser.add_argument("--promote", action="store_true")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    report = train(args.kb, config=args.config, eval_qa=tuple(args.eval_qa), exclude_docs=tuple(args.exclude_docs),
                   max_chunks=args.max_chunks, epochs=args.epochs, gate=args.gate, promote=args.promote,
                   resume=args.resume)
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
