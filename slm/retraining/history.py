"""Run reports of `slm retrain`, kept in the knowledge base's SQLite (table `retrain_runs`): what changed,
timings, metrics before/after and the decision; `slm retrain --history` prints them."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from typing import Any, Iterator

from slm.retraining.changes import ChangeSet

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retrain_runs (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    report TEXT NOT NULL
)
"""


class Outcome(Enum):
    """How a run ended, with the process exit code schedulers see (documented in docs/retraining.md)."""

    NOTHING = ("nothing", 0)  # no document changed, nothing to train
    INDEX = ("index", 3)  # the index was updated; no new adapter (below the policy thresholds)
    PROMOTED = ("promoted", 4)  # a new adapter was trained, passed the gate and is served
    REJECTED = ("rejected", 5)  # a new adapter was trained and rejected; the previous one keeps serving
    FAILED = ("failed", 1)

    @property
    def status(self) -> str:
        return self.value[0]

    @property
    def exit_code(self) -> int:
        return self.value[1]

    @classmethod
    def from_status(cls, status: str) -> "Outcome | None":
        return next((o for o in cls if o.status == status), None)


RUNNING = "running"
INTERRUPTED = "interrupted"  # the process died (SIGKILL, power loss) before finishing
DECIDED = ("promoted", "rejected")  # runs that consumed the pending changes


@dataclass(frozen=True)
class RunRecord:
    """One retraining run: the report stored in the KB and printed by `--history`."""

    run_id: str
    started: float
    pid: int = field(default_factory=os.getpid)
    finished: float | None = None
    status: str = RUNNING  # running | nothing | index | promoted | rejected | failed | interrupted
    stage: str = "start"
    root: str = ""
    changes: ChangeSet = ChangeSet()  # found by this pass
    pending: ChangeSet = ChangeSet()  # since the last training (what the policy weighed)
    changed_share: float | None = None
    policy: tuple[str, ...] = ()
    resumed_from: str | None = None  # the interrupted run this one picked up
    data_cutoff: float | None = None  # changes logged up to this time are in the candidate's data
    train_chunks: int = 0
    replay_chunks: int = 0
    candidate: str | None = None
    served_before: str | None = None
    served_after: str | None = None
    eval_questions: int = 0
    metrics_before: dict[str, float | None] = field(default_factory=dict)
    metrics_after: dict[str, float | None] = field(default_factory=dict)
    gate: tuple[str, ...] = ()
    promote: bool | None = None  # the gate's decision, recorded before it is carried out
    eval_dir: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def outcome(self) -> Outcome | None:
        return Outcome.from_status(self.status)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes"], data["pending"] = self.changes.to_json(), self.pending.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["changes"] = ChangeSet.from_json(data.get("changes"))
        data["pending"] = ChangeSet.from_json(data.get("pending"))
        for name in ("policy", "gate"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)

    def lines(self) -> list[str]:
        """The human report."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        took = f"{self.finished - self.started:.1f}s" if self.finished else "unfinished"
        out = [f"{self.run_id}  {when}  {self.status.upper()}  ({took}, last stage: {self.stage})"]
        out.append(f"  this pass: {self.changes.describe()}" + (f"; source {self.root}" if self.root else ""))
        if self.resumed_from:
            out.append(f"  resumed interrupted run {self.resumed_from}")
        out += [f"  policy: {r}" for r in self.policy]
        if self.candidate:
            out.append(f"  candidate {self.candidate}: {self.train_chunks} changed + {self.replay_chunks} replayed "
                       f"chunks; {self.eval_questions} held-out questions")
        if self.metrics_after:
            for name in sorted(set(self.metrics_before) | set(self.metrics_after)):
                before, after = self.metrics_before.get(name), self.metrics_after.get(name)
                out.append(f"    {name:<20} {_fmt(before):>8} -> {_fmt(after):>8}")
        out += [f"  gate: {r}" for r in self.gate[:1]]
        out.append(f"  served: {self.served_before or 'base'} -> {self.served_after or self.served_before or 'base'}")
        if self.timings:
            out.append("  timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        if self.eval_dir:
            out.append(f"  evaluation report: {self.eval_dir}")
        if self.error:
            out.append(f"  error: {self.error}")
        return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class RetrainHistory:
    """The `retrain_runs` table in the KB's SQLite, on its own connection."""

    def __init__(self, store: Any):
        self._conn = store.connect()
        self._conn.execute(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def save(self, record: RunRecord) -> RunRecord:
        self._conn.execute(
            "INSERT OR REPLACE INTO retrain_runs(id, started, finished, status, stage, report) VALUES (?, ?, ?, ?, ?, ?)",
            (record.run_id, record.started, record.finished, record.status, record.stage,
             json.dumps(record.to_json(), ensure_ascii=False)),
        )
        return record

    def update(self, record: RunRecord, **changes: Any) -> RunRecord:
        return self.save(replace(record, **changes))

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        rows = self._conn.execute("SELECT report FROM retrain_runs ORDER BY started DESC LIMIT ?", (limit,)).fetchall()
        return [RunRecord.from_json(json.loads(r[0])) for r in rows]

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.runs(limit=1_000_000))

    def mark_interrupted(self) -> list[RunRecord]:
        """Runs still marked running belong to dead processes (call this holding the retrain lock)."""
        rows = self._conn.execute("SELECT report FROM retrain_runs WHERE status = ? ORDER BY started", (RUNNING,))
        stale = [RunRecord.from_json(json.loads(r[0])) for r in rows.fetchall()]
        return [self.update(r, status=INTERRUPTED, error=r.error or f"interrupted at stage '{r.stage}'") for r in stale]

    def last_decided(self) -> RunRecord | None:
        """The latest run that trained an adapter and decided on it (promoted or rejected)."""
        rows = self._conn.execute(
            f"SELECT report FROM retrain_runs WHERE status IN ({','.join('?' * len(DECIDED))}) "
            "ORDER BY started DESC LIMIT 1",
            DECIDED,
        ).fetchall()
        return RunRecord.from_json(json.loads(rows[0][0])) if rows else None
