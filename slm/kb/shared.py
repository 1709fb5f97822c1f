"""The knowledge base as an API replica sees it with `index.backend: pgvector`: chunks, vectors and BM25
come from PostgreSQL (published by `slm ingest`), so a replica needs only the DSN and the embedder.
The local folder (`kb`) still holds what is per deployment: API keys, adapters, calibration, feedback."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from slm.config import Settings
from slm.kb.embedder_choice import AUTO, choose_embedder
from slm.errors import IndexMismatchError, KnowledgeBaseError
from slm.kb.index.manifest import Manifest, load_checked_embedder
from slm.kb.index.pg import check_settings, current_chunks_view, open_pool, safe_dsn, schema_id
from slm.types import Chunk

if TYPE_CHECKING:
    from slm.kb.embedding import Embedder
    from slm.kb.index.pg_search import PgLoadedIndex
    from slm.retrieval.hybrid import HybridRetriever

log = logging.getLogger(__name__)

_CHUNK_SELECT = 'SELECT id, doc_id, text, start, "end", section, anchor, page, title, source, audiences FROM {}'


class SharedKnowledgeBase:
    """Open with `SharedKnowledgeBase.open(settings)`; follows new generations with `reload_if_changed()`."""

    def __init__(self, settings: Settings, pool: Any, *, embedder: "Embedder | None" = None):
        self.settings = settings
        self.path = Path(settings.kb)
        self._pool = pool
        self._embedder = embedder
        self._index: "PgLoadedIndex | None" = None
        self._index_generation: int | None = None
        self._lock = threading.RLock()

    @classmethod
    def open(cls, settings: Settings, *, embedder: "Embedder | None" = None) -> "SharedKnowledgeBase":
        """Connect; IndexMismatchError when the served generation was built with another embedder."""
        check_settings(settings.index)
        kb = cls(settings, open_pool(settings.index), embedder=embedder)
        try:
            manifest = kb.manifest()
            if manifest is None:
                raise KnowledgeBaseError(
                    f"nothing is published in schema '{settings.index.schema}' at '{safe_dsn(settings.index.dsn)}': "
                    "run `slm ingest ROOT` with index.backend: pgvector and this index.dsn first")
            if settings.embedder.model != AUTO or embedder is not None:
                manifest.check_embedder(kb.embedder_name)
        except BaseException:
            kb.close()
            raise
        return kb

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "SharedKnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- generations ------------------------------------------------------------------------
    def current_generation(self) -> int | None:
        """The generation the database serves now (None before the first publish)."""
        import psycopg
        from psycopg import sql

        try:
            with self._pool.connection() as conn:
                row = conn.execute(sql.SQL("SELECT generation FROM {}.state WHERE id = 1")
                                   .format(schema_id(self.settings.index))).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return int(row[0]) if row else None

    def manifest(self) -> Manifest | None:
        from psycopg import sql

        number = self.current_generation()
        if number is None:
            return None
        with self._pool.connection() as conn:
            row = conn.execute(sql.SQL("SELECT embedder, dimension, chunks, created FROM {}.generations WHERE number = %s")
                               .format(schema_id(self.settings.index)), [number]).fetchone()
        if row is None:
            return None
        return Manifest(embedder=row[0], dimension=row[1], generation=number, chunks=row[2], created=row[3])

    def index(self) -> "PgLoadedIndex | None":
        with self._lock:
            if self._index is None:
                self._load_index()
            return self._index

    def _load_index(self) -> None:
        from slm.kb.index.pg_search import load_shared_generation

        for _attempt in range(3):
            number = self.current_generation()
            if number is None:
                self._index, self._index_generation = None, None
                return
            try:
                self._index, self._index_generation = load_shared_generation(self._pool, self.settings.index, number), number
                return
            except LookupError:
                continue  # dropped by two publishes in quick succession: read the pointer again
        raise KnowledgeBaseError("the shared index kept changing while loading it; try again")

    def reload_if_changed(self) -> bool:
        """Switch to the generation the database serves now, if it is newer; True if it did."""
        with self._lock:
            number = self.current_generation()
            if number == self._index_generation:
                return False
            manifest = self.manifest()
            if manifest is not None and manifest.embedder != self.embedder_name:
                if self.settings.embedder.model == AUTO:
                    self._embedder = None  # follow the embedder the published generation was built with
                    self._load_index()
                    return True
                raise IndexMismatchError(
                    f"the shared index was rebuilt with embedder '{manifest.embedder}', this process uses "
                    f"'{self.embedder_name}'; restart it with embedder.model set to '{manifest.embedder}'")
            self._load_index()
            log.info("serving shared index generation %s", self._index_generation)
            return True

    # --- models -----------------------------------------------------------------------------
    def embedder(self) -> "Embedder":
        with self._lock:
            if self._embedder is None:
                settings = replace(self.settings.embedder, model=self.embedder_name)
                self._embedder = load_checked_embedder(settings, self.manifest(), "shared index")
            return self._embedder

    @property
    def embedder_name(self) -> str:
        """The embedder's spec; under `auto`, the one the published generation was built with."""
        if self._embedder is not None:
            return self._embedder.model_name
        if self.settings.embedder.model != AUTO:
            return self.settings.embedder.model
        manifest = self.manifest()
        return manifest.embedder if manifest is not None else choose_embedder(AUTO, ())

    def set_embedder(self, embedder: "Embedder") -> None:
        with self._lock:
            self._embedder = embedder

    def retriever(self) -> "HybridRetriever":
        from slm.retrieval.hybrid import HybridRetriever

        return HybridRetriever(self, self.settings.retrieval)

    # --- content ----------------------------------------------------------------------------
    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        """Chunks in the order of `ids`, as the generation served *now* holds them (so a re-labelled chunk
        is checked against its new audiences even by a process still searching an older generation)."""
        from psycopg import sql

        ids = list(ids)
        if not ids:
            return []
        view = current_chunks_view(self.settings.index)
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(sql.SQL(_CHUNK_SELECT + " WHERE id = ANY(%s)").format(view), [ids]).fetchall()
        except _undefined_table():
            return []  # nothing published yet
        found = {r[0]: _chunk(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def all_chunks(self, audiences: frozenset[str] | None = None) -> Iterator[Chunk]:
        from psycopg import sql

        from slm.access.labels import can_see

        try:
            with self._pool.connection() as conn:
                rows = conn.execute(sql.SQL(_CHUNK_SELECT + " ORDER BY position")
                                    .format(current_chunks_view(self.settings.index))).fetchall()
        except _undefined_table():
            return
        for row in rows:
            chunk = _chunk(row)
            if can_see(chunk.audiences, audiences):
                yield chunk


def _chunk(row: Sequence) -> Chunk:
    return Chunk(id=row[0], doc_id=row[1], text=row[2], start=row[3], end=row[4], section=tuple(row[5]),
                 anchor=row[6], page=row[7], title=row[8], source=row[9], audiences=tuple(row[10]))


def _undefined_table() -> type[BaseException]:
    import psycopg

    return psycopg.errors.UndefinedTable
