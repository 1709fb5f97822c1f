"""Merge a registered adapter into its base model and save a plain model folder (for vLLM, llama.cpp, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slm.errors import TrainingError


def merged_model(base: str, adapter: str | Path | None) -> tuple[Any, Any]:
    """(model, tokenizer) of `base` with `adapter` folded into its weights, fp32 on CPU; no adapter: the base."""
    import torch

    from slm.generation.loading import load_causal_lm

    model, tokenizer = load_causal_lm(base, adapter=adapter, dtype=torch.float32, device="cpu")
    if adapter is not None:
        model = model.merge_and_unload()
    return model, tokenizer


def merge_adapter(version: Any, out: Path) -> Path:
    """`version` is a registry AdapterVersion; writes model (safetensors) + tokenizer to `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} exists and is not empty; choose a new folder")
    merged, tokenizer = merged_model(version.base, version.path)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
