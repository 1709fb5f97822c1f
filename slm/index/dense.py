"""Dense index: FAISS inner product over L2-normalised vectors (= cosine), searchable within a subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "dense.faiss"


class DenseIndex:
    """Exact search (IndexFlatIP); positions are row numbers of the generation's chunk list."""

    def __init__(self, index):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> "DenseIndex":
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(vectors)
        return cls(index)

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(Path(folder) / FILE))

    @classmethod
    def load(cls, folder: Path) -> "DenseIndex":
        import faiss

        return cls(faiss.read_index(str(Path(folder) / FILE)))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, cosine scores); with `allowed` (bool per position) only those rows compete."""
        import faiss

        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        params = None
        if allowed is not None:
            ids = np.flatnonzero(allowed).astype(np.int64)
            if len(ids) == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            k = min(k, len(ids))
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
        k = min(k, self.size)
        scores, positions = self._index.search(query, k, params=params)
        keep = positions[0] >= 0
        return positions[0][keep].astype(np.int64), scores[0][keep]

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.reconstruct_batch(positions)
