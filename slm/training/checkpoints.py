"""Trainer checkpoints: `checkpoints/step-N` (adapter + optimizer, scheduler, RNG, step, losses), written atomically.

Under torchrun rank 0 writes one checkpoint for all ranks (the RNG state of each rank included), and every rank
resumes from it.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

from slm.errors import TrainingError


def _rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, model: Any, state: dict, adapter_state: dict | None = None) -> Path:
    """Write `checkpoints/step-N` completely, then point `checkpoints/latest` at it (atomic replace).

    `adapter_state`: the full LoRA weights where the model holds only a shard of them (FSDP)."""
    import torch

    from slm.atomic import atomic_write_text

    root = run_dir / "checkpoints"
    name = f"step-{state['step']:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, state_dict=adapter_state)
    torch.save(state, tmp / "trainer_state.pt")
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", name + "\n")
    for old in root.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / "trainer_state.pt").is_file() else None


def load_checkpoint(folder: Path, model: Any) -> dict:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(folder / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    return torch.load(folder / "trainer_state.pt", weights_only=False)


def check_resumable(state: dict, checkpoint: Path, total_steps: int, n_examples: int, world: int,
                    strategy: str) -> None:
    """Refuse a checkpoint of another run, or one written by another number of processes or strategy."""
    written = state.get("world", 1)
    if written != world:
        raise TrainingError(f"checkpoint {checkpoint} was written by {written} process(es), this run has {world}: "
                            f"resume it with the same number (torchrun --nproc_per_node {written})")
    if world > 1 and state.get("strategy") != strategy:
        raise TrainingError(f"checkpoint {checkpoint} was written with training.distributed: {state.get('strategy')}; "
                            "resume it with the same strategy")
    if state["total_steps"] != total_steps or state["examples"] != n_examples:
        raise TrainingError(
            f"checkpoint {checkpoint} belongs to a different run (steps/data differ); start without --resume"
        )


def trainer_state(step, total_steps, n_examples, losses, optimizer_state, scheduler) -> dict:
    return {
        "step": step,
        "total_steps": total_steps,
        "examples": n_examples,
        "losses": list(losses),
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
    }
