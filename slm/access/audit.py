"""The audit log: who asked, with which audiences, and which documents the answer read and cited.

Rows live in the knowledge base's SQLite (`<kb>/store.sqlite`, table `audit_log`), one per answer
given through the API, the chat or the CLI; `access.audit_log: false` turns it off. The question
text is stored only when `serve.log_questions` is on (its length always is). Export: `slm audit export`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from slm.errors import KnowledgeBaseError
from slm.types import Answer

log = logging.getLogger(__name__)

STORE_FILE = "store.sqlite"
TRUSTED = "*"  # how a trusted caller's audiences (None: sees everything) are written in the log

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    channel TEXT NOT NULL,
    who TEXT NOT NULL,
    audiences TEXT NOT NULL,
    question_chars INTEGER NOT NULL,
    question TEXT,
    model TEXT NOT NULL,
    adapter TEXT,
    abstained INTEGER NOT NULL,
    cited_docs TEXT NOT NULL,
    cited_chunks TEXT NOT NULL,
    passage_docs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log(time);
CREATE INDEX IF NOT EXISTS audit_log_who ON audit_log(who);
"""


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key (`key:<name>`), a chat user, or the local CLI user, and what they may see."""

    who: str
    channel: str  # api | ui | cli | library
    audiences: frozenset[str] | None  # None: trusted, sees every document


@dataclass(frozen=True)
class AuditEvent:
    """One answer as the audit log keeps it."""

    id: int
    time: float  # unix time
    channel: str
    who: str
    audiences: tuple[str, ...] | None  # None: a trusted caller
    question_chars: int
    question: str | None  # only with serve.log_questions
    model: str
    adapter: str | None
    abstained: bool
    cited_docs: tuple[str, ...]
    cited_chunks: tuple[str, ...]
    passage_docs: tuple[str, ...]  # every document the model was shown, cited or not

    def to_json(self) -> dict:
        data = asdict(self)
        data["time_iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time))
        return data


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _encode_audiences(audiences: frozenset[str] | None) -> str:
    return json.dumps(TRUSTED if audiences is None else sorted(audiences))


def _decode_audiences(raw: str) -> tuple[str, ...] | None:
    value = json.loads(raw)
    return None if value == TRUSTED else tuple(value)


class AuditLog:
    """The `audit_log` table of one knowledge base (created on first use; other tables untouched)."""

    def __init__(self, db_path: Path, *, store_questions: bool = False):
        self.path = Path(db_path)
        self.store_questions = store_questions
        if not self.path.parent.is_dir():
            raise KnowledgeBaseError(f"knowledge base folder not found: {self.path.parent}; run `slm ingest` first")
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    @classmethod
    def for_kb(cls, kb_path: Path, *, store_questions: bool = False) -> "AuditLog":
        return cls(Path(kb_path) / STORE_FILE, store_questions=store_questions)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise KnowledgeBaseError(f"cannot open {self.path}: {exc}") from exc
        return conn

    def record(self, caller: Caller, answer: Answer) -> int:
        """Store one answer; returns the row id."""
        cited_docs = _unique(c.doc_id for c in answer.citations)
        cited_chunks = _unique(c.chunk_id for c in answer.citations)
        passage_docs = _unique(h.chunk.doc_id for h in answer.passages)
        conn = self._connect()
        try:
            with conn:
                cursor = conn.execute(
                    "INSERT INTO audit_log(time, channel, who, audiences, question_chars, question, model, adapter,"
                    " abstained, cited_docs, cited_chunks, passage_docs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        caller.channel,
                        caller.who,
                        _encode_audiences(caller.audiences),
                        len(answer.question),
                        answer.question if self.store_questions else None,
                        answer.model or "",
                        answer.adapter,
                        int(answer.abstained),
                        json.dumps(cited_docs),
                        json.dumps(cited_chunks),
                        json.dumps(passage_docs),
                    ),
                )
            return int(cursor.lastrowid)
        finally:
            conn.close()

    def events(self, *, since: float | None = None, who: str | None = None, doc: str | None = None) -> Iterator[AuditEvent]:
        """Logged answers, oldest first; optionally only those at or after `since`, by `who`, or that
        showed the model document `doc`."""
        sql = "SELECT * FROM audit_log"
        where: list[str] = []
        params: list = []
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if who is not None:
            where.append("who = ?")
            params.append(who)
        if where:
            sql += " WHERE " + " AND ".join(where)
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        try:
            for row in conn.execute(sql + " ORDER BY id", params):
                event = AuditEvent(
                    id=row["id"],
                    time=row["time"],
                    channel=row["channel"],
                    who=row["who"],
                    audiences=_decode_audiences(row["audiences"]),
                    question_chars=row["question_chars"],
                    question=row["question"],
                    model=row["model"],
                    adapter=row["adapter"],
                    abstained=bool(row["abstained"]),
                    cited_docs=tuple(json.loads(row["cited_docs"])),
                    cited_chunks=tuple(json.loads(row["cited_chunks"])),
                    passage_docs=tuple(json.loads(row["passage_docs"])),
                )
                if doc is None or doc in event.passage_docs or doc in event.cited_docs:
                    yield event
        finally:
            conn.close()

    def export_jsonl(self, out: IO[str], **filters) -> int:
        """One JSON object a line (filters as in `events`); returns how many."""
        n = 0
        for event in self.events(**filters):
            out.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
            n += 1
        return n


_LOGS: dict[tuple[str, bool], AuditLog] = {}
_LOGS_LOCK = threading.Lock()


def audit_log_for(settings) -> AuditLog | None:
    """The KB's audit log per the settings (None when `access.audit_log` is off or there is no KB yet)."""
    if not settings.access.audit_log:
        return None
    store_questions = bool(getattr(settings.serve, "log_questions", False))
    key = (str(Path(settings.kb).resolve()), store_questions)
    with _LOGS_LOCK:
        if key not in _LOGS:
            try:
                _LOGS[key] = AuditLog.for_kb(Path(settings.kb), store_questions=store_questions)
            except KnowledgeBaseError:
                return None
        return _LOGS[key]


def record_answer(audit: AuditLog | None, caller: Caller, answer: Answer) -> None:
    """Log an answer; a failing audit write is reported in the server log, never shown to the caller."""
    if audit is None:
        return
    try:
        audit.record(caller, answer)
    except (sqlite3.Error, KnowledgeBaseError) as exc:
        log.error("audit log write failed (%s): answer to %s not recorded", exc, caller.who)


def audited(items: Iterable, audit: AuditLog | None, caller: Caller) -> Iterator:
    """Pass a `stream()` through unchanged, logging its final Answer once it arrives."""
    iterator = iter(items)
    try:
        for item in iterator:
            if isinstance(item, Answer):
                record_answer(audit, caller, item)
            yield item
    finally:
        close = getattr(iterator, "close", None)  # a caller that stops early stops generation too
        if close is not None:
            close()


def audiences_label(audiences: Sequence[str] | None) -> str:
    """How the CLI shows a caller's audiences."""
    return "all (trusted)" if audiences is None else (", ".join(audiences) or "(none)")
