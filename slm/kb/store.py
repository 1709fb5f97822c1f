"""The knowledge base's SQLite store: documents, chunks, cached embeddings, the ingestion log and
the pointer to the current index generation (committed in the same transaction as the chunks)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from slm.errors import KnowledgeBaseError
from slm.types import Chunk, Document

SCHEMA_VERSION = 2  # 2: documents.language, chunks.language

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    audiences TEXT NOT NULL,
    metadata TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    chars INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    language TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    section TEXT NOT NULL,
    anchor TEXT,
    page INTEGER,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    audiences TEXT NOT NULL,
    embed_key TEXT NOT NULL,
    language TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ingest_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    time REAL NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
"""


@dataclass(frozen=True)
class DocumentInfo:
    """A document as the store knows it (no text): what `slm status` and the UI list."""

    id: str
    title: str
    source: str
    content_hash: str
    fingerprint: str
    audiences: tuple[str, ...]
    metadata: dict[str, str]
    chunk_count: int
    chars: int
    ingested_at: float
    language: str = ""


@dataclass(frozen=True)
class LogEntry:
    """One line of the ingestion log."""

    run_id: str
    time: float
    path: str
    status: str  # added | changed | unchanged | deleted | failed | warning | run
    reason: str | None


@dataclass(frozen=True)
class StoredChunk:
    """A chunk with the key of its embedding in the `embeddings` table."""

    chunk: Chunk
    embed_key: str


class Store:
    """SQLite at `<kb>/store.sqlite` (WAL: readers never block the one writer)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()  # one connection per thread: servers call in from many
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        with self.transaction() as conn:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            _migrate(conn)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the same database (other modules keep their own tables here)."""
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise KnowledgeBaseError(f"cannot open {self.path}: {exc}") from exc
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection to the store."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._guard:
                self._all.append(conn)
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (a killed process rolls back too)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._guard:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str, conn: sqlite3.Connection | None = None) -> None:
        (conn or self._conn).execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- documents ------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        rows = self._conn.execute(
            "SELECT id, title, source, content_hash, fingerprint, audiences, metadata, chunk_count, chars,"
            " ingested_at, language FROM documents ORDER BY id"
        ).fetchall()
        return [
            DocumentInfo(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), json.loads(r[6]), r[7], r[8], r[9], r[10])
            for r in rows
        ]

    def document_languages(self) -> list[tuple[str, str]]:
        """(document id, chunk language) for every language each document's chunks are in."""
        return self._conn.execute("SELECT DISTINCT doc_id, language FROM chunks").fetchall()

    def languages(self) -> dict[str, int]:
        """How many chunks each language has (what picks the `auto` embedder and the query analyser)."""
        return dict(self._conn.execute("SELECT language, COUNT(*) FROM chunks GROUP BY language").fetchall())

    def fingerprints(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT id, fingerprint FROM documents").fetchall())

    def counts(self) -> tuple[int, int]:
        docs = self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return docs, chunks

    # --- chunks ---------------------------------------------------------------------------
    _CHUNK_COLUMNS = 'id, doc_id, text, start, "end", section, anchor, page, title, source, audiences, embed_key, language'

    @staticmethod
    def _row_to_stored(row: Sequence) -> StoredChunk:
        chunk = Chunk(
            id=row[0],
            doc_id=row[1],
            text=row[2],
            start=row[3],
            end=row[4],
            section=tuple(json.loads(row[5])),
            anchor=row[6],
            page=row[7],
            title=row[8],
            source=row[9],
            audiences=tuple(json.loads(row[10])),
            language=row[12],
        )
        return StoredChunk(chunk, row[11])

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        """Chunks in the order of `ids`; ids the store does not hold are left out."""
        found: dict[str, Chunk] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self._conn.execute(f"SELECT {self._CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", part):
                found[row[0]] = self._row_to_stored(row).chunk
        return [found[i] for i in ids if i in found]

    def iter_stored_chunks(self) -> Iterator[StoredChunk]:
        """Every chunk in a stable order (document id, then position in the document)."""
        cursor = self._conn.execute(f"SELECT {self._CHUNK_COLUMNS} FROM chunks ORDER BY doc_id, ordinal")
        for row in cursor:
            yield self._row_to_stored(row)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self._conn.execute(
            f"SELECT {self._CHUNK_COLUMNS} FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,)
        ).fetchall()
        return [self._row_to_stored(r).chunk for r in rows]

    # --- ingestion's writes, all inside its one commit transaction `conn` ----------------------------
    def put_document(self, conn: sqlite3.Connection, doc: Document, *, fingerprint: str, chunk_count: int,
                     ingested_at: float) -> None:
        """Add or replace a document's row (its chunks are written by `put_chunks`)."""
        conn.execute(_INSERT_DOCUMENT, (
            doc.id, doc.title, doc.source, doc.content_hash, fingerprint, json.dumps(list(doc.audiences)),
            json.dumps(dict(doc.metadata)), chunk_count, len(doc.text), ingested_at, doc.language,
        ))

    def put_chunks(self, conn: sqlite3.Connection, rows: Iterable[tuple[Chunk, int, str]]) -> None:
        """Add chunks, each as (chunk, its position in the document, the key of its embedding)."""
        conn.executemany(_INSERT_CHUNK, (_chunk_row(chunk, ordinal, key) for chunk, ordinal, key in rows))

    def delete_chunks_of(self, conn: sqlite3.Connection, doc_ids: Iterable[str]) -> None:
        """Remove every chunk of these documents (their rows stay until `delete_documents`)."""
        conn.executemany("DELETE FROM chunks WHERE doc_id = ?", ((doc_id,) for doc_id in doc_ids))

    def delete_documents(self, conn: sqlite3.Connection, doc_ids: Iterable[str]) -> None:
        """Remove these documents; their chunks go with them (ON DELETE CASCADE)."""
        conn.executemany("DELETE FROM documents WHERE id = ?", ((doc_id,) for doc_id in doc_ids))

    def rekey_chunks(self, conn: sqlite3.Connection, rekeyed: Iterable[tuple[str, str]]) -> None:
        """Point chunks at new embedding keys, given as (new key, chunk id) (a kept chunk under a new embedder)."""
        conn.executemany("UPDATE chunks SET embed_key = ? WHERE id = ?", rekeyed)

    # --- embeddings -----------------------------------------------------------------------
    def cached_embeddings(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self._conn.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", part):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_embeddings(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Cache vectors (their own short transaction: a killed ingest keeps what it paid for)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings(key, vector) VALUES (?, ?)",
                ((k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items),
            )

    def prune_embeddings(self, conn: sqlite3.Connection) -> int:
        """Drop cached vectors no chunk uses any more."""
        cur = conn.execute("DELETE FROM embeddings WHERE key NOT IN (SELECT embed_key FROM chunks)")
        return cur.rowcount

    # --- ingestion log --------------------------------------------------------------------
    def log(self, conn: sqlite3.Connection, run_id: str, path: str, status: str, reason: str | None = None) -> None:
        conn.execute(
            "INSERT INTO ingest_log(run_id, time, path, status, reason) VALUES (?, ?, ?, ?, ?)",
            (run_id, time.time(), path, status, reason),
        )

    def log_entries(self, run_id: str | None = None, limit: int = 1000) -> list[LogEntry]:
        if run_id is None:
            rows = self._conn.execute(
                "SELECT run_id, time, path, status, reason FROM ingest_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT run_id, time, path, status, reason FROM ingest_log WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [LogEntry(*r) for r in rows]

    def last_run(self) -> tuple[float | None, int]:
        """(time of the latest ingestion log entry or None, files that failed in that run)."""
        last = self._conn.execute("SELECT MAX(time) FROM ingest_log").fetchone()[0]
        if last is None:
            return None, 0
        run = self._conn.execute("SELECT run_id FROM ingest_log ORDER BY id DESC LIMIT 1").fetchone()[0]
        failed = self._conn.execute(
            "SELECT COUNT(*) FROM ingest_log WHERE run_id = ? AND status = 'failed'", (run,)).fetchone()[0]
        return last, failed

    def logged_since(self, cutoff: float, statuses: Sequence[str]) -> list[tuple[str, str]]:
        """(path, status) of the log entries after `cutoff` (unix time) with one of `statuses`, oldest first."""
        return [tuple(r) for r in self._conn.execute(
            f"SELECT path, status FROM ingest_log WHERE time > ? AND status IN ({','.join('?' * len(statuses))})"
            " ORDER BY id", (cutoff, *statuses)).fetchall()]

    def was_present_before(self, path: str, cutoff: float) -> bool:
        """Whether the log shows `path` ingested (added, changed or unchanged) at or before `cutoff`."""
        return self._conn.execute(
            "SELECT 1 FROM ingest_log WHERE path = ? AND time <= ? AND status IN ('added', 'changed', 'unchanged')"
            " LIMIT 1", (path, cutoff)).fetchone() is not None


def _chunk_row(chunk: Chunk, ordinal: int, embed_key: str) -> tuple:
    """The `chunks` row for a chunk."""
    return (
        chunk.id,
        chunk.doc_id,
        ordinal,
        chunk.text,
        chunk.start,
        chunk.end,
        json.dumps(list(chunk.section)),
        chunk.anchor,
        chunk.page,
        chunk.title,
        chunk.source,
        json.dumps(list(chunk.audiences)),
        embed_key,
        chunk.language,
    )


_INSERT_CHUNK = (
    'INSERT INTO chunks(id, doc_id, ordinal, text, start, "end", section, anchor, page, title, source, audiences,'
    " embed_key, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DOCUMENT = (
    "INSERT OR REPLACE INTO documents(id, title, source, content_hash, fingerprint, audiences, metadata,"
    " chunk_count, chars, ingested_at, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an older slm up to SCHEMA_VERSION in place (inside the opening transaction).

    1 → 2: the `language` columns, filled by detection from the stored text, so an existing KB keeps working
    (its next ingest rebuilds the index with the per-language analysers)."""
    from slm.text.language import detect_language

    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) >= SCHEMA_VERSION:
        return
    for table in ("documents", "chunks"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if "language" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN language TEXT NOT NULL DEFAULT ''")
    rows = conn.execute("SELECT id, text FROM chunks WHERE language = ''").fetchall()
    if rows:
        conn.executemany(
            "UPDATE chunks SET language = ? WHERE id = ?", ((detect_language(t, default="en"), i) for i, t in rows)
        )
        conn.execute(
            "UPDATE documents SET language = COALESCE((SELECT c.language FROM chunks c WHERE c.doc_id = documents.id"
            " GROUP BY c.language ORDER BY COUNT(*) DESC LIMIT 1), 'en') WHERE language = ''"
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
