"""Merge a registered adapter into its base model and save a plain model folder (for vLLM, llama.cpp, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slm.errors import TrainingError


def merge_adapter(version: Any, out: Path) -> Path:
    """`version` is a registry AdapterVersion; writes model (safetensors) + tokenizer to `out`."""
    import torch

    from slm.generation import load_causal_lm

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} exists and is not empty; choose a new folder")
    model, tokenizer = load_causal_lm(version.base, adapter=version.path, dtype=torch.float32, device="cpu")
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
