"""PostgreSQL + pgvector plumbing: settings checks, connections, and the layout of a shared knowledge base.

One PostgreSQL schema (`index.schema`) holds one shared knowledge base:
  state(id = 1, generation)   the generation readers serve, switched in the transaction that publishes it
  generations(number, ...)    per generation: embedder, dimension, chunk count, search kind, where it came
                              from (source, source_generation) and its BM25 index (`sparse`, a tar)
  chunks_NNNNNN               one immutable table per generation: position (= row of the BM25 index),
                              chunk fields, audiences text[], embedding vector(dimension)
  current_chunks              a view of the served generation's table (switched with `state`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm.config import IndexSettings
from slm.errors import ConfigError, KnowledgeBaseError

if TYPE_CHECKING:
    from psycopg import sql

BACKENDS = ("faiss", "pgvector")
SEARCHES = ("exact", "hnsw")
EXTRA = "pip install 'slm[pgvector]'"

STATE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.state (
    id integer PRIMARY KEY CHECK (id = 1),
    generation integer NOT NULL,
    switched_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.generations (
    number integer PRIMARY KEY,
    embedder text NOT NULL,
    dimension integer NOT NULL,
    chunks integer NOT NULL,
    search text NOT NULL,
    source text NOT NULL,
    source_generation integer NOT NULL,
    created text NOT NULL,
    sparse bytea NOT NULL
);
"""

CHUNKS_DDL = """
CREATE TABLE {table} (
    position integer PRIMARY KEY,
    id text NOT NULL UNIQUE,
    doc_id text NOT NULL,
    text text NOT NULL,
    start integer NOT NULL,
    "end" integer NOT NULL,
    section text[] NOT NULL,
    anchor text,
    page integer,
    title text NOT NULL,
    source text NOT NULL,
    audiences text[] NOT NULL,
    embedding vector({dimension}) NOT NULL
)
"""
CHUNK_COLUMNS = ("position", "id", "doc_id", "text", "start", "end", "section", "anchor", "page", "title", "source",
                 "audiences", "embedding")
CHUNK_TYPES = ("int4", "text", "text", "text", "int4", "int4", "text[]", "text", "int4", "text", "text", "text[]",
               "vector")


def check_settings(settings: IndexSettings) -> str:
    """The backend name, or ConfigError for a value we do not know or a pgvector backend without a DSN."""
    backend = (settings.backend or "").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"index.backend: unknown backend '{settings.backend}'; use one of {', '.join(BACKENDS)}")
    if backend == "pgvector":
        if not settings.dsn:
            raise ConfigError("index.backend is pgvector but index.dsn is not set: give a PostgreSQL connection string "
                              "(e.g. SLM_INDEX__DSN=postgresql://slm@db.internal/slm)")
        if settings.search not in SEARCHES:
            raise ConfigError(f"index.search: unknown search '{settings.search}'; use one of {', '.join(SEARCHES)}")
        if not settings.schema or not settings.schema.strip():
            raise ConfigError("index.schema must name a PostgreSQL schema (default: slm)")
    return backend


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - an unparsable DSN: say nothing of its content
        return "<unparsable dsn>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def _psycopg():
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError as exc:
        raise KnowledgeBaseError(f"the pgvector backend needs psycopg and pgvector ({exc}); {EXTRA}") from None
    return psycopg, register_vector


def connect(settings: IndexSettings, *, create_extension: bool = False) -> Any:
    """One autocommit connection with the vector type registered (what a publisher uses)."""
    psycopg, register_vector = _psycopg()
    try:
        conn = psycopg.connect(settings.dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise KnowledgeBaseError(f"cannot reach PostgreSQL at '{safe_dsn(settings.dsn)}': {_first_line(exc)}") from None
    try:
        if create_extension:
            _ensure_extension(conn)
        register_vector(conn)
    except psycopg.Error as exc:
        conn.close()
        raise KnowledgeBaseError(f"PostgreSQL at '{safe_dsn(settings.dsn)}' has no pgvector: {_first_line(exc)}; "
                                 "install the extension and run `CREATE EXTENSION vector` once as a superuser") from None
    except BaseException:
        conn.close()
        raise
    return conn


def open_pool(settings: IndexSettings) -> Any:
    """A connection pool for readers (API threads); each connection has the vector type and ef_search set."""
    psycopg, register_vector = _psycopg()
    from psycopg_pool import ConnectionPool

    def configure(conn) -> None:
        register_vector(conn)
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(int(settings.ef_search))])

    pool = ConnectionPool(settings.dsn, min_size=1, max_size=max(1, settings.pool_size), open=False,
                          kwargs={"autocommit": True, "connect_timeout": 10}, configure=configure,
                          name="slm-pgvector")
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:  # PoolTimeout hides the cause: ask once more for a readable reason
        pool.close()
        reason = _first_line(exc)
        try:
            probe = connect(settings)
            probe.close()
        except KnowledgeBaseError as direct:
            raise direct from None
        raise KnowledgeBaseError(f"cannot open connections to PostgreSQL at '{safe_dsn(settings.dsn)}': {reason}") from None
    return pool


def _ensure_extension(conn) -> None:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def schema_id(settings: IndexSettings) -> "sql.Identifier":
    from psycopg import sql

    return sql.Identifier(settings.schema)


def chunks_table(settings: IndexSettings, number: int) -> "sql.Identifier":
    from psycopg import sql

    return sql.Identifier(settings.schema, f"chunks_{number:06d}")


def current_chunks_view(settings: IndexSettings) -> "sql.Identifier":
    """`current_chunks`: a view of the served generation's table, redefined in each publish transaction."""
    from psycopg import sql

    return sql.Identifier(settings.schema, "current_chunks")


def ensure_schema(conn, settings: IndexSettings) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema_id(settings)))
    for statement in STATE_DDL.strip().split(";"):
        if statement.strip():
            conn.execute(sql.SQL(statement).format(schema=schema_id(settings)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
