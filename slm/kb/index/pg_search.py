"""Reading a shared generation from PostgreSQL: dense search in SQL (pgvector, audiences in the WHERE
clause), BM25 from the generation's stored index, positions that match the local FAISS rows one to one."""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slm.access.labels import normalize_labels
from slm.config import IndexSettings
from slm.kb.index.generation import LoadedIndex
from slm.kb.index.manifest import Manifest
from slm.kb.index.pg import chunks_table, schema_id
from slm.kb.index.postings import FOLDER as POSTINGS_FOLDER, Postings, SegmentedBM25
from slm.kb.index.sparse import SparseIndex

_EMPTY = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


class PgDenseIndex:
    """Inner product (= cosine on unit vectors) over one generation's table; exact scan or HNSW."""

    def __init__(self, pool: Any, table: Any, size: int, dimension: int):
        self._pool = pool
        self._table = table
        self.size = size
        self.dimension = dimension

    def search(self, query: np.ndarray, k: int, audiences: frozenset[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, cosines); a caller with audiences only meets rows sharing one of its labels."""
        from psycopg import sql

        if self.size == 0 or k <= 0:
            return _EMPTY
        vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        params: dict[str, Any] = {"q": vector, "k": int(k)}
        where = sql.SQL("")
        if audiences is not None:
            where = sql.SQL(" WHERE audiences && %(labels)s::text[]")
            params["labels"] = sorted(normalize_labels(audiences))
        # ORDER BY the operator itself so an HNSW index (when the generation has one) is used; the same
        # parameter in both places lets PostgreSQL compute the distance once per row.
        query_sql = sql.SQL("SELECT position, embedding <#> %(q)s FROM {}{} ORDER BY embedding <#> %(q)s LIMIT %(k)s")
        with self._pool.connection() as conn:
            rows = conn.execute(query_sql.format(self._table, where), params).fetchall()
        if not rows:
            return _EMPTY
        positions = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        scores = np.fromiter((-r[1] for r in rows), dtype=np.float32, count=len(rows))
        return positions, scores

    def cosines(self, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
        from psycopg import sql

        positions = [int(p) for p in positions]
        if not positions:
            return np.zeros(0, dtype=np.float32)
        vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        with self._pool.connection() as conn:
            rows = conn.execute(sql.SQL("SELECT position, -(embedding <#> %s) FROM {} WHERE position = ANY(%s)")
                                .format(self._table), [vector, positions]).fetchall()
        by_position = dict(rows)
        return np.asarray([by_position.get(p, 0.0) for p in positions], dtype=np.float32)


@dataclass
class PgLoadedIndex(LoadedIndex):
    """A shared generation in the shape the retriever reads: chunk ids and audience groups by position,
    BM25 in memory, dense search delegated to PostgreSQL."""

    def search_dense(self, query: np.ndarray, k: int, audiences: frozenset[str] | None) -> tuple[np.ndarray, np.ndarray]:
        return self.dense.search(query, k, audiences)

    def cosines(self, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
        return self.dense.cosines(positions, query)


def load_shared_generation(pool: Any, settings: IndexSettings, number: int) -> PgLoadedIndex:
    """Generation `number`: its manifest, chunk ids and audiences in position order, and its BM25 index
    (LookupError when a newer publish already removed it)."""
    import psycopg
    from psycopg import sql

    table = chunks_table(settings, number)
    with pool.connection() as conn:
        row = conn.execute(sql.SQL("SELECT embedder, dimension, chunks, created, sparse FROM {}.generations"
                                   " WHERE number = %s").format(schema_id(settings)), [number]).fetchone()
        if row is None:
            raise LookupError(f"shared generation {number} is gone")
        embedder, dimension, size, created, sparse_tar = row
        try:
            rows = conn.execute(sql.SQL("SELECT id, audiences FROM {} ORDER BY position").format(table)).fetchall()
        except psycopg.errors.UndefinedTable:
            raise LookupError(f"shared generation {number} is gone") from None
    groups: dict[tuple[str, ...], int] = {}
    row_groups = np.asarray([groups.setdefault(tuple(r[1]), len(groups)) for r in rows], dtype=np.int64)
    return PgLoadedIndex(
        manifest=Manifest(embedder=embedder, dimension=dimension, generation=number, chunks=size, created=created),
        chunk_ids=[r[0] for r in rows],
        row_groups=row_groups,
        groups=list(groups),
        dense=PgDenseIndex(pool, table, len(rows), dimension),
        sparse=_sparse_from_tar(bytes(sparse_tar), len(rows)),
    )


def _sparse_from_tar(blob: bytes, size: int) -> "SparseIndex | SegmentedBM25":
    """BM25 postings as the local index has them (published since format 2), or a bm25s index (before)."""
    with tempfile.TemporaryDirectory(prefix="slm-bm25-") as tmp:
        names: list[str] = []
        if blob:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
                names = tar.getnames()
                ours = "postings.npz" in names
                target = Path(tmp) / (POSTINGS_FOLDER if ours else "bm25")
                target.mkdir()
                tar.extractall(target, filter="data")
        if "postings.npz" in names:
            return SegmentedBM25([Postings.load(Path(tmp))])  # same scores and tie order as the local KB
        (Path(tmp) / "bm25").mkdir(exist_ok=True)
        return SparseIndex.load(Path(tmp), size)  # loads into memory (mmap off): the folder may go
