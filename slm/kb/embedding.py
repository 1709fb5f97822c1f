"""Sentence embeddings: a sentence-transformers model behind a small interface (float32, L2-normalised)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from slm.config import EmbedderSettings
from slm.errors import ModelLoadError

# Specs whose models want queries marked as queries (sentence-transformers 5's encode_query would also pick
# up prompts a MiniLM folder never had; only these get it, so English vectors stay what they were).
_QUERY_PREFIXED = ("package:multilingual-e5",)
log = logging.getLogger(__name__)


class Embedder:
    """Loads the configured model lazily-free (at construction) and encodes texts in batches."""

    def __init__(self, settings: EmbedderSettings, *, _model: Any = None, _name: str | None = None):
        self.settings = settings
        self.model_name = _name or settings.model
        self._model = _model if _model is not None else _load(settings)

    @classmethod
    def from_model(cls, model: Any, *, name: str = "in-memory", batch_size: int = 32) -> "Embedder":
        """Wrap an already built SentenceTransformer (tests build tiny random ones)."""
        return cls(EmbedderSettings(model=name, batch_size=batch_size), _model=model, _name=name)

    @property
    def model(self) -> Any:
        return self._model

    @property
    def dimension(self) -> int:
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(getter())

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for `texts` in their order. Texts are batched longest-first (less padding);
        `on_batch(n)` is called after each batch of n texts (progress bars, checkpoints)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        size = batch_size or self.settings.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="chunk", leave=False)
        try:
            for start in range(0, len(order), size):
                idx = order[start : start + size]
                vectors = self._model.encode(
                    [texts[i] for i in idx],
                    batch_size=size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                out[idx] = np.asarray(vectors, dtype=np.float32)
                if bar is not None:
                    bar.update(len(idx))
                if on_batch is not None:
                    on_batch(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return normalise(out)

    def encode_query(self, query: str) -> np.ndarray:
        """One search query's vector. Models trained with a query instruction (e5's `query: `) get it through
        their own `encode_query`; the others encode a query like any text."""
        encode = getattr(self._model, "encode_query", None) if self.settings.model.startswith(_QUERY_PREFIXED) else None
        if encode is None:
            return self.encode([query])[0]
        return normalise(np.asarray(encode([query]), dtype=np.float32).reshape(1, -1))[0]


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


def _load(settings: EmbedderSettings) -> Any:
    from slm.kb.embedding_e5 import E5_SPEC, load_e5
    from slm.models import LOAD_LOCK, resolve_model

    if settings.model == E5_SPEC:  # its own engine, not a sentence-transformers folder
        return load_e5(settings.max_seq_length)

    resolved = resolve_model(settings.model)
    backend = _backend_for(settings, resolved.is_local)
    if backend != "torch":
        try:
            return _load_onnx(settings, resolved, backend)
        except ModelLoadError as exc:
            if settings.backend.strip().lower() != "auto":
                raise
            log.warning("embedder.backend auto: %s; using torch", exc)
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the "Loading weights" bar is noise next to ours
        with LOAD_LOCK:
            model = SentenceTransformer(resolved.location, device=settings.device)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one actionable message
        hint = "" if resolved.is_local else " (it is not a local folder: without a model hub, use a path or package:NAME)"
        raise ModelLoadError(f"cannot load embedding model '{settings.model}'{hint}: {exc}") from exc
    if settings.max_seq_length:
        model.max_seq_length = settings.max_seq_length
    return model


def _backend_for(settings: EmbedderSettings, local: bool) -> str:
    """The backend to load. `auto` is ONNX int8 for a local model on a CPU with onnxruntime installed (measured
    1.40x torch fp32 on this 2-core CPU at Python FAQ dense hit@5 0.994 vs 1.000, hybrid unchanged:
    docs/index.md), else torch (a GPU, a hub id, no onnxruntime)."""
    from slm.kb.embedding_onnx import check_backend, onnx_available

    backend = check_backend(settings.backend)
    if backend != "auto":
        return backend
    device = (settings.device or "").strip().lower()
    if not local or device not in ("", "cpu") or not onnx_available():
        return "torch"
    if not device:
        import torch

        if torch.cuda.is_available():
            return "torch"
    return "onnx-int8"


def _load_onnx(settings: EmbedderSettings, resolved, backend: str) -> Any:
    """The sentence-transformers folder `resolved` exported (once, cached) and loaded on ONNX Runtime."""
    from slm.kb.embedding_onnx import OnnxSentenceModel, exported_model

    if not resolved.is_local:
        raise ModelLoadError(f"embedder.backend {backend} needs a local model folder, not '{settings.model}'")
    try:
        onnx_file = exported_model(Path(resolved.location), quantize=backend == "onnx-int8")
        return OnnxSentenceModel(Path(resolved.location), onnx_file, max_seq_length=settings.max_seq_length or None)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any export/runtime failure becomes one actionable message
        raise ModelLoadError(f"cannot load embedder '{settings.model}' with embedder.backend {backend}: {exc}; "
                             "set embedder.backend: torch") from exc
