"""Cross-encoder reranking: scores (query, passage) pairs jointly; slower than the indexes, more precise."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from slm.errors import ModelLoadError


class Reranker:
    """A sentence-transformers CrossEncoder; `score` returns one relevance number per passage."""

    def __init__(self, model: Any, name: str):
        self.model = model
        self.name = name

    def score(self, query: str, passages: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        scores = self.model.predict(
            [(query, p) for p in passages], batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(passages), -1)[:, 0]


def load_reranker(spec: str, *, device: str | None = None, max_length: int = 512) -> Reranker:
    from slm.models import LOAD_LOCK, resolve_model

    resolved = resolve_model(spec)
    try:
        from sentence_transformers import CrossEncoder

        with LOAD_LOCK:
            model = CrossEncoder(resolved.location, device=device, max_length=max_length)
    except Exception as exc:  # noqa: BLE001 - one actionable message for any loader failure
        raise ModelLoadError(f"cannot load reranker '{spec}': {exc}") from exc
    return Reranker(model, spec)
