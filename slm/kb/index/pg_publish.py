"""Publish the local knowledge base's current index generation to PostgreSQL + pgvector, so API replicas
serve it: the whole generation (chunks, audiences, vectors, BM25) goes in one transaction that also
switches `state`, so a reader sees the old generation or the new one, never half of one."""

from __future__ import annotations

import io
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slm.access.labels import normalize_label
from slm.kb.chunking import context_text
from slm.config import IndexSettings
from slm.errors import KnowledgeBaseError
from slm.kb.index.pg import (CHUNK_COLUMNS, CHUNK_TYPES, CHUNKS_DDL, check_settings, chunks_table, connect,
                          current_chunks_view, ensure_schema, schema_id)
from slm.kb.index.postings import FOLDER as POSTINGS_FOLDER, Postings

if TYPE_CHECKING:
    from slm.kb.local import KnowledgeBase

KEEP_PREVIOUS = 1  # generations kept behind the current one, for replicas that have not switched yet


@dataclass(frozen=True)
class PublishReport:
    generation: int | None  # the shared generation now served (None: the local KB holds no index yet)
    source_generation: int | None  # the local generation it was made from
    chunks: int
    published: bool  # False: the database already served this local generation
    seconds: float
    dropped: tuple[int, ...] = ()  # old shared generations removed


def source_of(kb: "KnowledgeBase") -> str:
    """Which local KB a shared generation came from (host and folder)."""
    return f"{socket.gethostname()}:{Path(kb.path).resolve()}"


def publish(kb: "KnowledgeBase", settings: IndexSettings, *, force: bool = False) -> PublishReport:
    """Mirror the KB's current generation into the database unless it already serves it (`force`: anyway)."""
    import psycopg
    from psycopg import sql

    t0 = time.perf_counter()
    check_settings(settings)
    local_number = kb.current_generation()
    local = kb.index()
    if local_number is None or local is None:
        return PublishReport(None, None, 0, False, time.perf_counter() - t0)
    manifest = kb.manifest()
    source = source_of(kb)
    conn = connect(settings, create_extension=True)
    try:
        ensure_schema(conn, settings)
        schema = schema_id(settings)
        if not force and _served_source(conn, schema) == (source, local_number):
            current = conn.execute(sql.SQL("SELECT generation FROM {}.state").format(schema)).fetchone()[0]
            return PublishReport(current, local_number, local.live, False, time.perf_counter() - t0)

        live = local.live_positions()  # rows not deleted since their segment was written
        ids = [local.chunk_ids[p] for p in live]
        chunks = kb.store.get_chunks(ids)
        if [c.id for c in chunks] != ids:
            raise KnowledgeBaseError("the store and the index generation disagree; run `slm ingest ROOT --rebuild`")
        vectors = local.dense.vectors(live) if len(live) else np.zeros((0, 1))
        sparse = _sparse_tar([context_text(c) for c in chunks], [c.language for c in chunks])  # = ingest.index_text

        with conn.transaction():
            # One publisher at a time per schema; the number is taken under the lock.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"slm-publish:{settings.schema}"])
            number = conn.execute(sql.SQL("SELECT COALESCE(MAX(number), 0) + 1 FROM {}.generations")
                                  .format(schema)).fetchone()[0]
            table = chunks_table(settings, number)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))  # an orphan of a failed publish
            conn.execute(sql.SQL(CHUNKS_DDL).format(table=table, dimension=sql.Literal(manifest.dimension)))
            # Keep each vector in its row: left to TOAST, a 1,200-char chunk pushes its vector out of line and
            # every distance of a scan then costs a TOAST fetch (several times slower, docs/pgvector.md).
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(table))
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in CHUNK_COLUMNS)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)) as copy:
                copy.set_types(list(CHUNK_TYPES))
                for position, (chunk, vector) in enumerate(zip(chunks, vectors)):
                    copy.write_row([position, chunk.id, chunk.doc_id, chunk.text, chunk.start, chunk.end,
                                    list(chunk.section), chunk.anchor, chunk.page, chunk.title, chunk.source,
                                    [normalize_label(a) for a in chunk.audiences], np.asarray(vector, dtype=np.float32)])
            if settings.search == "hnsw":
                # Inner product on unit vectors = cosine, as the FAISS IndexFlatIP scores.
                conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_ip_ops)").format(table))
            conn.execute(sql.SQL("ANALYZE {}").format(table))
            conn.execute(
                sql.SQL("INSERT INTO {}.generations (number, embedder, dimension, chunks, search, source,"
                        " source_generation, created, sparse) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)").format(schema),
                [number, manifest.embedder, manifest.dimension, len(chunks), settings.search, source, local_number,
                 manifest.created, sparse],
            )
            # The view readers fetch chunks through: always the served generation, switched with `state`
            # (last in the transaction, so its lock is held for moments while the COPY above may take seconds).
            view = current_chunks_view(settings)
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
            conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(view, table))
            conn.execute(
                sql.SQL("INSERT INTO {}.state (id, generation, switched_at) VALUES (1, %s, now())"
                        " ON CONFLICT (id) DO UPDATE SET generation = EXCLUDED.generation, switched_at = now()")
                .format(schema),
                [number],
            )
        dropped = _drop_old(conn, settings, keep_from=number - KEEP_PREVIOUS)
        return PublishReport(number, local_number, len(chunks), True, time.perf_counter() - t0, dropped)
    except psycopg.Error as exc:
        raise KnowledgeBaseError(f"PostgreSQL refused the publish ({type(exc).__name__}): {str(exc).strip()}") from None
    finally:
        conn.close()


def _served_source(conn, schema) -> tuple[str, int] | None:
    from psycopg import sql

    row = conn.execute(
        sql.SQL("SELECT g.source, g.source_generation FROM {0}.state s JOIN {0}.generations g ON g.number = s.generation")
        .format(schema)).fetchone()
    return (row[0], int(row[1])) if row else None


def _drop_old(conn, settings: IndexSettings, *, keep_from: int) -> tuple[int, ...]:
    """Remove generations older than `keep_from` (short transactions: a DROP waits for readers of that table)."""
    from psycopg import sql

    schema = schema_id(settings)
    old = [r[0] for r in conn.execute(sql.SQL("SELECT number FROM {}.generations WHERE number < %s ORDER BY number")
                                      .format(schema), [keep_from])]
    for number in old:
        with conn.transaction():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(chunks_table(settings, number)))
            conn.execute(sql.SQL("DELETE FROM {}.generations WHERE number = %s").format(schema), [number])
    return tuple(old)


def _sparse_tar(texts: list[str], languages: list[str]) -> bytes:
    """BM25 postings of exactly the published rows (the local index's format: same scores, same tie order)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="slm-bm25-") as tmp:
        Postings.build(texts, languages).save(Path(tmp))
        return _tar_folder(Path(tmp) / POSTINGS_FOLDER)


def _tar_folder(folder: Path) -> bytes:
    """The BM25 index files as one uncompressed tar (empty when the generation has no vocabulary)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=path.relative_to(folder).as_posix())
    return buffer.getvalue()
