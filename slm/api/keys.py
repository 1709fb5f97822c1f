"""API keys for the HTTP service: shown once, stored only as a SHA-256 hash in `<kb>/keys.sqlite`.

Each key is bound to audience labels; the API passes them to retrieval so a key sees only the
documents (and citations) its audiences may see. The label `*` marks a trusted key that sees all.
Every lookup reads the table, so keys created or revoked by the CLI apply to a running server at once.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from slm.access.labels import normalize_labels
from slm.errors import ApiKeyError

KEYS_FILE = "keys.sqlite"
KEY_PREFIX = "slm-"
TRUSTED_AUDIENCE = "*"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    audiences TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE revoked IS NULL;
"""


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the secret itself)."""

    id: str
    name: str
    prefix: str  # the first characters of the secret, to recognise it in a list
    audiences: tuple[str, ...]
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    @property
    def caller_audiences(self) -> frozenset[str] | None:
        """What retrieval filters by: the key's labels, or None (sees all) for a trusted `*` key."""
        if TRUSTED_AUDIENCE in self.audiences:
            return None
        return normalize_labels(self.audiences)


@dataclass(frozen=True)
class NewKey:
    """A key just created: `secret` is shown to the user once and never stored."""

    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    # Secrets are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """The `api_keys` table of one knowledge base."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_kb(cls, kb_path: Path) -> "KeyStore":
        return cls(Path(kb_path) / KEYS_FILE)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def _connect_for_write(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise ApiKeyError(
                f"knowledge-base folder {self.path.parent} does not exist; pass --kb or run `slm ingest` first"
            )
        conn = self._connect()
        conn.executescript(_SCHEMA)
        return conn

    def create(self, name: str, audiences: Sequence[str]) -> NewKey:
        name = name.strip()
        labels = tuple(sorted(normalize_labels(audiences) or ()))
        if not name:
            raise ApiKeyError("a key needs a name (--name)")
        if not labels:
            raise ApiKeyError("a key needs at least one audience label (--audience a,b; `*` for all documents)")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            name=name,
            prefix=secret[: len(KEY_PREFIX) + 6],
            audiences=labels,
            created=_now(),
        )
        with closing(self._connect_for_write()) as conn, conn:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, prefix, hash, audiences, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (key.id, key.name, key.prefix, hash_secret(secret), ",".join(labels), key.created),
                )
            except sqlite3.IntegrityError:
                raise ApiKeyError(f"an active key named '{name}' exists; revoke it or pick another name") from None
        return NewKey(key=key, secret=secret)

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        if not self.path.is_file():
            return []
        where = "" if include_revoked else " WHERE revoked IS NULL"
        with closing(self._connect()) as conn:
            if not _has_table(conn):
                return []
            rows = conn.execute(f"SELECT * FROM api_keys{where} ORDER BY created, id").fetchall()
        return [_row_to_key(r) for r in rows]

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke the active key with this name or id; raises ApiKeyError when none matches."""
        with closing(self._connect_for_write()) as conn, conn:
            row = conn.execute(
                "SELECT * FROM api_keys WHERE revoked IS NULL AND (id = ? OR name = ?)", (name_or_id, name_or_id)
            ).fetchone()
            if row is None:
                raise ApiKeyError(f"no active key named or with id '{name_or_id}'; see `slm keys list`")
            revoked = _now()
            conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (revoked, row["id"]))
        key = _row_to_key(row)
        return ApiKey(key.id, key.name, key.prefix, key.audiences, key.created, revoked)

    def verify(self, secret: str | None) -> ApiKey | None:
        """The active key with this secret, or None (missing, unknown or revoked)."""
        if not secret or not secret.startswith(KEY_PREFIX) or not self.path.is_file():
            return None
        with closing(self._connect()) as conn:
            if not _has_table(conn):
                return None
            row = conn.execute(
                "SELECT * FROM api_keys WHERE hash = ? AND revoked IS NULL", (hash_secret(secret),)
            ).fetchone()
        return _row_to_key(row) if row is not None else None


def _has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='api_keys'").fetchone() is not None


def _row_to_key(row: sqlite3.Row) -> ApiKey:
    audiences = tuple(a for a in row["audiences"].split(",") if a)
    return ApiKey(row["id"], row["name"], row["prefix"], audiences, row["created"], row["revoked"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
