"""ONNX Runtime backend for sentence-transformers embedders: the model (pooling and normalisation included) is
exported once to ONNX, optionally int8-quantised (dynamic), cached atomically, and encoded on CPU without torch."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slm.errors import ModelLoadError
from slm.models import cache_root

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
ONNX_EXTRA = "pip install onnxruntime onnx (the `index` extra)"
# Bump when the export or the quantisation recipe changes: older cached files are then made again.
EXPORT_VERSION = "1"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_backend(backend: str) -> str:
    """The normalised backend name, or ConfigError naming the known ones."""
    from slm.errors import ConfigError

    name = (backend or "auto").strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"embedder.backend: unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    return name


def onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def model_key(folder: Path) -> str:
    """A key that changes when the model's weights or config change (size + content hash of the weights)."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for name in ("config.json", "modules.json", "1_Pooling/config.json", *_WEIGHT_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def exported_model(folder: Path, *, quantize: bool, cache_dir: Path | None = None) -> Path:
    """The cached ONNX file for the sentence-transformers model in `folder`, exporting (and quantising) it first
    when missing. Each file is written under a temp name and renamed into place, so a killed export leaves
    no half file behind and two processes exporting at once both end with a whole one."""
    folder = Path(folder)
    target_dir = (cache_dir or cache_root()) / "onnx" / f"{folder.name}-{model_key(folder)}"
    fp32 = target_dir / "model.onnx"
    int8 = target_dir / "model-int8.onnx"
    wanted = int8 if quantize else fp32
    if wanted.is_file():
        return wanted
    target_dir.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        log.info("exporting %s to ONNX (once; cached in %s)", folder, target_dir)
        _atomic(fp32, lambda tmp: _export(folder, tmp))
    if quantize and not int8.is_file():
        log.info("quantising %s to int8 (once)", fp32)
        _atomic(int8, lambda tmp: _quantize(fp32, tmp))
    return wanted


def _atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _export(folder: Path, target: Path) -> None:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(f"exporting to ONNX needs torch and sentence-transformers ({exc})") from None
    from slm.models import LOAD_LOCK

    with LOAD_LOCK:
        model = SentenceTransformer(str(folder), device="cpu", model_kwargs={"attn_implementation": "eager"})
    model.eval()
    names = _input_names(model.tokenizer)

    class Wrapped(torch.nn.Module):
        """The whole sentence-transformers pipeline (transformer, pooling, dense, normalise) as one graph."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(dict(zip(names, inputs)))["sentence_embedding"]

    sample = model.tokenizer(["an example sentence", "a second, longer example sentence"], padding=True,
                             return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["sentence_embedding"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(Wrapped(model), tuple(sample[n] for n in names), str(target), input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)


def _quantize(source: Path, target: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelLoadError(f"int8 quantisation needs onnxruntime and onnx ({exc}); {ONNX_EXTRA}") from None
    # Dynamic quantisation: int8 weights, activations quantised per batch at run time; no calibration data.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def _input_names(tokenizer) -> list[str]:
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


class OnnxSentenceModel:
    """What `Embedder` needs of a SentenceTransformer (`encode`, the dimension, `max_seq_length`), on ONNX Runtime."""

    def __init__(self, folder: Path, onnx_file: Path, *, max_seq_length: int | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError(f"embedder.backend onnx needs onnxruntime ({exc}); {ONNX_EXTRA}") from None
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.onnx_file = Path(onnx_file)
        self.tokenizer = AutoTokenizer.from_pretrained(str(_transformer_dir(self.folder)))
        self._names = _input_names(self.tokenizer)
        self.max_seq_length = max_seq_length or _st_max_seq_length(self.folder) or 512
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: on a shared 2-core machine spinning took cycles from
        # everything else (int8 7.2 vs 6.0 chunks per CPU-second, fp32 6.0 vs 4.5, FAQ chunks, load ~4).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])
        self._dimension = int(self._session.get_outputs()[0].shape[-1] or self.encode(["x"]).shape[1])

    def get_sentence_embedding_dimension(self) -> int:
        return self._dimension

    get_embedding_dimension = get_sentence_embedding_dimension

    def encode(self, sentences: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_: Any) -> np.ndarray:
        out = []
        sentences = list(sentences)
        for start in range(0, len(sentences), batch_size):
            batch = self.tokenizer(sentences[start : start + batch_size], padding=True, truncation=True,
                                   max_length=self.max_seq_length, return_tensors="np")
            feeds = {n: batch[n].astype(np.int64) for n in self._names}
            out.append(self._session.run(None, feeds)[0])
        vectors = np.concatenate(out).astype(np.float32) if out else np.zeros((0, self._dimension), np.float32)
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
        return vectors


def _transformer_dir(folder: Path) -> Path:
    """The sentence-transformers Transformer module's folder (the root for most saved models)."""
    modules = folder / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


def _st_max_seq_length(folder: Path) -> int | None:
    config = _transformer_dir(folder) / "sentence_bert_config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    return None
