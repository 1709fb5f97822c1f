"""A prepared run: the tokenised examples and loop plan written by `slm train --prepare-only`, so the
LoRA loop can run on another machine (a GPU box) with `python -m slm.training.prepared RUN_DIR`, or on
several GPUs with `torchrun --nproc_per_node N -m slm.training.prepared RUN_DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from slm.errors import TrainingError
from slm.training.data import EncodedExample
from slm.training.distributed import STRATEGIES
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


def train_prepared(run_dir: Path, *, base: str | None = None, strategy: str | None = None,
                   progress: bool = True) -> LoopResult:
    """Run the LoRA loop of a prepared run (resuming from its checkpoint if there is one).

    Under `torchrun --nproc_per_node N` every process runs this: the loop is data-parallel over the N ranks
    (`strategy` ddp or fsdp overrides the plan's training.distributed); see docs/training-gpu.md.
    """
    import torch

    from slm.generation.loading import load_causal_lm
    from slm.training.distributed import check_strategy, init_from_env
    from slm.training.lora import attach_lora, train_lora

    info = init_from_env()  # before loading: it selects this rank's GPU
    plan = read_plan(run_dir)
    lora = LoraSpec(**{**plan["lora"], "target_modules": tuple(plan["lora"]["target_modules"] or ()) or None})
    loop = LoopConfig(**plan["loop"])
    if strategy is not None:
        loop = replace(loop, distributed=check_strategy(strategy))
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    # FSDP is for bases too big for one GPU: load into host memory, and fully_shard moves each rank's shard over
    device = "cpu" if info.world > 1 and loop.distributed == "fsdp" else None
    model, _ = load_causal_lm(base or plan["base"], dtype=dtype, device=device)
    peft_model = attach_lora(model, lora, gradient_checkpointing=loop.gradient_checkpointing, seed=loop.seed)
    return train_lora(peft_model, read_encoded(run_dir), loop, run_dir, pad_id=plan["pad_id"], resume=True,
                      progress=progress and info.main)


def torchrun_command(run_dir: Path, processes: int, *, strategy: str | None = None) -> list[str]:
    """The command that runs a prepared loop in `processes` processes on this machine (a free port each time)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "slm.training.prepared", str(run_dir)]
    return command + (["--strategy", strategy] if strategy else [])


def launch_prepared(run_dir: Path, processes: int, *, strategy: str | None = None) -> LoopResult:
    """Run the prepared loop on `processes` GPUs of this machine (CPU processes where there is no GPU), wait for
    it, and read its result. A failed or killed run keeps its checkpoint: launching again resumes from it."""
    import subprocess

    import torch

    gpus = torch.cuda.device_count()
    if gpus and processes > gpus:
        raise TrainingError(f"{processes} processes asked for, but this machine has {gpus} GPU(s)")
    code = subprocess.call(torchrun_command(run_dir, processes, strategy=strategy))
    if code != 0 or not loop_finished(run_dir):
        raise TrainingError(f"the {processes}-process training loop failed (exit code {code}; its log is above); "
                            f"`slm train --resume --gpus {processes}` continues from its last checkpoint")
    return LoopResult.load(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the LoRA loop of a run prepared by `slm train --prepare-only`; "
                                                 "under torchrun --nproc_per_node N, on N GPUs.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--base", help="where the base model is on this machine (default: the plan's spec)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="with several processes: ddp (replicate the model) or fsdp (shard it); "
                             "default: the plan's training.distributed")
    args = parser.parse_args()
    try:
        result = train_prepared(args.run_dir, base=args.base, strategy=args.strategy)
    except TrainingError as exc:
        raise SystemExit(f"error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"steps": result.steps, "world": result.world, "tokens": result.tokens,
                          "seconds": round(result.seconds, 1), "tokens_per_second": round(result.tokens_per_second, 1),
                          "loss_first": result.losses[0], "loss_last": result.losses[-1]}))
    _leave_process_group()


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
