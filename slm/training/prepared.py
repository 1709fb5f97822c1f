"""A prepared run: the tokenised examples and loop plan written by `slm train --prepare-only`, so the
LoRA loop can run on another machine (a GPU box) with `python -m slm.training.prepared RUN_DIR`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from slm.training.data import EncodedExample
from slm.training.lora import RESULT_FILE, LoopConfig, LoopResult, LoraSpec

PLAN_FILE = "plan.json"
ENCODED_FILE = "encoded.jsonl"


def write_plan(run_dir: Path, encoded: Sequence[EncodedExample], *, base: str, lora: LoraSpec, loop: LoopConfig,
               pad_id: int) -> None:
    with (run_dir / ENCODED_FILE).open("w", encoding="utf-8") as handle:
        for e in encoded:
            handle.write(json.dumps({"id": e.id, "input_ids": e.input_ids, "labels": e.labels}) + "\n")
    plan = {"base": base, "lora": asdict(lora), "loop": asdict(loop), "pad_id": pad_id, "examples": len(encoded),
            "target_modules": list(lora.target_modules or ())}
    (run_dir / PLAN_FILE).write_text(json.dumps(plan, indent=1), encoding="utf-8")


def read_plan(run_dir: Path) -> dict:
    return json.loads((run_dir / PLAN_FILE).read_text(encoding="utf-8"))


def read_encoded(run_dir: Path) -> list[EncodedExample]:
    out = []
    for line in (run_dir / ENCODED_FILE).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        out.append(EncodedExample(record["id"], tuple(record["input_ids"]), tuple(record["labels"])))
    return out


def loop_finished(run_dir: Path) -> bool:
    return (run_dir / RESULT_FILE).is_file() and (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def train_prepared(run_dir: Path, *, base: str | None = None, progress: bool = True) -> LoopResult:
    """Run the LoRA loop of a prepared run (resuming from its checkpoint if there is one)."""
    import torch

    from slm.generation import load_causal_lm
    from slm.training.lora import attach_lora, train_lora

    plan = read_plan(run_dir)
    lora = LoraSpec(**{**plan["lora"], "target_modules": tuple(plan["lora"]["target_modules"] or ()) or None})
    loop = LoopConfig(**plan["loop"])
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    model, _ = load_causal_lm(base or plan["base"], dtype=dtype)
    peft_model = attach_lora(model, lora, gradient_checkpointing=loop.gradient_checkpointing, seed=loop.seed)
    return train_lora(peft_model, read_encoded(run_dir), loop, run_dir, pad_id=plan["pad_id"], resume=True,
                      progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the LoRA loop of a run prepared by `slm train --prepare-only`.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--base", help="where the base model is on this machine (default: the plan's spec)")
    args = parser.parse_args()
    result = train_prepared(args.run_dir, base=args.base)
    print(json.dumps({"steps": result.steps, "tokens": result.tokens, "seconds": round(result.seconds, 1),
                      "tokens_per_second": round(result.tokens_per_second, 1), "loss_first": result.losses[0],
                      "loss_last": result.losses[-1]}))


if __name__ == "__main__":
    main()
