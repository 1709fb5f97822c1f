"""Feedback on answers (thumbs up/down + comment), kept in the KB's SQLite in its own table; JSONL export."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, Mapping, Sequence

from slm.errors import KnowledgeBaseError, SlmError
from slm.types import Answer, Citation

STORE_FILE = "store.sqlite"
RATINGS = ("up", "down")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    user TEXT,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    citations TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT
)
"""


@dataclass(frozen=True)
class FeedbackRecord:
    """One rating of one answer, with what was asked, answered and cited, by whom, with which model."""

    id: int
    created: float  # unix time
    user: str | None
    rating: str  # "up" | "down"
    comment: str
    question: str
    answer: str
    abstained: bool
    citations: tuple[Citation, ...]
    model: str
    adapter: str | None
    read_docs: tuple[str, ...] | None = None  # documents the answer read or cited (None: rated before this was kept)

    def to_json(self) -> dict:
        data = asdict(self)
        data["created_iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return data


def _citation_from(data: dict) -> Citation:
    data = dict(data)
    data["section"] = tuple(data.get("section") or ())
    return Citation(**data)


class FeedbackStore:
    """The `feedback` table in `<kb>/store.sqlite` (created on first use; other tables are not touched)."""

    def __init__(self, db_path: Path):
        self.path = Path(db_path)
        if not self.path.parent.is_dir():
            raise KnowledgeBaseError(f"knowledge base folder not found: {self.path.parent}; run `slm ingest` first")
        with self._connect() as conn:
            conn.execute(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(feedback)")}
            if "read_docs" not in columns:  # added for audience-filtered exports; older rows keep NULL
                conn.execute("ALTER TABLE feedback ADD COLUMN read_docs TEXT")

    @classmethod
    def for_kb(cls, kb_path: Path) -> "FeedbackStore":
        return cls(Path(kb_path) / STORE_FILE)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise KnowledgeBaseError(f"cannot open {self.path}: {exc}") from exc
        return conn

    def record(self, answer: Answer, rating: str, *, user: str | None, comment: str = "") -> int:
        """Store `user`'s rating of `answer`; returns the new row id. `user` has no default so that every
        caller says whose rating it is (the chat passes its authenticated user; None: nobody logged in)."""
        if rating not in RATINGS:
            raise SlmError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
        citations = json.dumps([asdict(c) for c in answer.citations], ensure_ascii=False)
        read_docs = list(dict.fromkeys([h.chunk.doc_id for h in answer.passages] + [c.doc_id for c in answer.citations]))
        conn = self._connect()
        try:
            with conn:
                cursor = conn.execute(
                    "INSERT INTO feedback(created, user, rating, comment, question, answer, abstained, citations,"
                    " model, adapter, read_docs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        user,
                        rating,
                        (comment or "").strip()[:4000],
                        answer.question,
                        answer.text,
                        int(answer.abstained),
                        citations,
                        answer.model,
                        answer.adapter,
                        json.dumps(read_docs, ensure_ascii=False),
                    ),
                )
            return int(cursor.lastrowid)
        finally:
            conn.close()

    def records(self, *, since: float | None = None) -> Iterator[FeedbackRecord]:
        """Every rating, oldest first (or only those at or after `since`)."""
        conn = self._connect()
        try:
            sql = (
                "SELECT id, created, user, rating, comment, question, answer, abstained, citations, model, adapter,"
                " read_docs"
                " FROM feedback"
            )
            params: Sequence = ()
            if since is not None:
                sql += " WHERE created >= ?"
                params = (since,)
            for row in conn.execute(sql + " ORDER BY id", params):
                yield FeedbackRecord(
                    id=row[0],
                    created=row[1],
                    user=row[2],
                    rating=row[3],
                    comment=row[4],
                    question=row[5],
                    answer=row[6],
                    abstained=bool(row[7]),
                    citations=tuple(_citation_from(c) for c in json.loads(row[8])),
                    model=row[9],
                    adapter=row[10],
                    read_docs=tuple(json.loads(row[11])) if row[11] is not None else None,
                )
        finally:
            conn.close()

    def export_jsonl(self, out: IO[str], *, visible: Callable[[FeedbackRecord], bool] | None = None) -> int:
        """Write one JSON object a line (only records `visible` accepts, when given); returns how many."""
        n = 0
        for record in self.records():
            if visible is not None and not visible(record):
                continue
            out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            n += 1
        return n


def visible_to(audiences: frozenset[str] | None, doc_audiences: Mapping[str, Sequence[str]]) -> Callable[[FeedbackRecord], bool]:
    """A filter for exports to people with `audiences`: a record passes only when every document it read
    or cited still exists in the KB (`doc_audiences`: doc id -> labels) and is visible to them. Records
    rated before documents were kept pass only for trusted exports (audiences None)."""
    from slm.access.labels import can_see

    def check(record: FeedbackRecord) -> bool:
        if audiences is None:
            return True
        if record.read_docs is None:
            return False
        docs = set(record.read_docs) | {c.doc_id for c in record.citations}
        return all(doc in doc_audiences and can_see(doc_audiences[doc], audiences) for doc in docs)

    return check
