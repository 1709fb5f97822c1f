"""Dense index: FAISS inner product over L2-normalised vectors (= cosine), searchable within a subset; exact
(flat) for small segments, HNSW above a size where a scan stops being fast enough (bench/scale.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "dense.faiss"
KINDS = ("auto", "flat", "hnsw")
# HNSW: recall@10 0.872 against exact at efSearch 128 on 200k synthetic rows, query p50 0.4 ms vs 41 ms for the
# flat scan, build 37 s (bench/scale.py --index-only 200000, 2 cores); real embeddings not measured yet.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


def choose_kind(kind: str, rows: int, threshold: int) -> str:
    """`auto`: exact below `threshold` rows, HNSW from there on."""
    from slm.errors import ConfigError

    kind = (kind or "auto").strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"index.dense: unknown kind '{kind}'; use one of {', '.join(KINDS)}")
    if kind == "auto":
        return "hnsw" if rows >= threshold else "flat"
    return kind


class DenseIndex:
    """Positions are row numbers of the segment's chunk list."""

    def __init__(self, index):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "flat") -> "DenseIndex":
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
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
    def kind(self) -> str:
        return "hnsw" if hasattr(self._index, "hnsw") else "flat"

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
        bits = None
        if allowed is not None:
            visible = int(np.count_nonzero(allowed))
            if visible == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            k = min(k, visible)
            # A bitmap selector costs one bit per row to build: a hash set of allowed ids (IDSelectorBatch)
            # cost O(visible) per query, 30+ ms at a million rows.
            bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bits))
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
            else:
                params = faiss.SearchParameters(sel=selector)
        k = min(k, self.size)
        scores, positions = self._index.search(query, k, params=params)
        del bits  # kept alive until the search is done: the selector points into it
        keep = positions[0] >= 0
        return positions[0][keep].astype(np.int64), scores[0][keep]

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.reconstruct_batch(positions)


class SegmentedDense:
    """Dense search over segments laid end to end (segment i's rows start at `offsets[i]`): each segment's
    top-k, merged by score."""

    def __init__(self, segments: list[DenseIndex]):
        self.segments = segments
        self.offsets = np.cumsum([0] + [s.size for s in segments]).astype(np.int64)

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    @property
    def dimension(self) -> int:
        return self.segments[0].dimension if self.segments else 0

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        positions, scores = [], []
        for segment, start in zip(self.segments, self.offsets):
            part = None if allowed is None else allowed[start : start + segment.size]
            pos, sc = segment.search(query, k, part)
            positions.append(pos + start)
            scores.append(sc)
        if not positions:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        positions, scores = np.concatenate(positions), np.concatenate(scores)
        order = np.lexsort((positions, -scores))[:k]
        return positions[order], scores[order]

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.zeros((len(positions), self.dimension), dtype=np.float32)
        which = np.searchsorted(self.offsets, positions, side="right") - 1
        for i in np.unique(which):
            rows = np.flatnonzero(which == i)
            out[rows] = self.segments[i].vectors(positions[rows] - self.offsets[i])
        return out
