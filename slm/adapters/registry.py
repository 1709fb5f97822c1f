"""Versioned adapter registry in `<kb>/adapters/`: register, promote (explicit or gated), reject, roll back.

Layout: `<root>/<version>/` holds a plain PEFT adapter (adapter_config.json + adapter_model.safetensors)
plus `info.json` (base spec, audiences, data hash, training config, metrics, status). `<root>/current`
names the promoted version and `<root>/history.json` the promotion order; both are replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from slm.atomic import atomic_write_text
from slm.errors import RegistryError
from slm.adapters.gate import judge

CURRENT_FILE = "current"
HISTORY_FILE = "history.json"
INFO_FILE = "info.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_VERSION_RE = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class AdapterInfo:
    """What `info.json` records about a version: how it was trained (given at registration) and its state in
    the registry (version, created, status, metrics, promotion or rejection). Keys a newer slm wrote and this
    one does not know are kept in `extra` and written back unchanged."""

    base: str = ""  # the base model spec it was trained on
    audiences: tuple[str, ...] = ()  # of the documents it learned from (sorted); () = unknown, trusted callers only
    data_hash: str = ""  # sha256 of its training data file
    teacher: str = ""  # who wrote the questions
    data_examples: int | None = None
    exclude_docs: tuple[str, ...] = ()  # doc-id globs kept out of its training data
    eval_qa: tuple[str, ...] = ()  # evaluation question files its data was guarded against
    run_dir: str = ""
    # Free-form records of the run, as their writers define them: the loop config (slm.training.lora), the
    # LoRA spec, the question generation's stats, the loop's report (steps, tokens, losses, ...).
    training: Mapping[str, Any] = field(default_factory=dict)
    lora: Mapping[str, Any] = field(default_factory=dict)
    generation: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    # ---- kept by the registry
    version: str = ""
    created: str = ""  # ISO time of registration (UTC)
    status: str = "candidate"  # candidate | promoted | retired | rejected
    metrics: Mapping[str, Any] = field(default_factory=dict)  # its evaluation, as the gate compared it
    promoted: str | None = None  # ISO time of its last promotion
    rejection: Mapping[str, Any] | None = None  # why the gate rejected it (reasons, metrics, report folder)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AdapterInfo:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        for key in ("audiences", "exclude_docs", "eval_qa"):
            if key in known:
                known[key] = tuple(str(x) for x in known[key] or ())
        for key in ("training", "lora", "generation", "report", "metrics"):
            if key in known:
                known[key] = dict(known[key] or {})
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
        return out


def read_info(folder: Path) -> AdapterInfo:
    """The `info.json` of an adapter folder; RegistryError when it is missing or unreadable."""
    try:
        data = json.loads((Path(folder) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{Path(folder) / INFO_FILE} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{Path(folder) / INFO_FILE} is not a JSON object")
    try:
        return AdapterInfo.from_json(data)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{Path(folder) / INFO_FILE} has a malformed field: {exc}") from exc


def _write_info(folder: Path, info: AdapterInfo) -> None:
    atomic_write_text(Path(folder) / INFO_FILE, json.dumps(info.to_json(), indent=2, sort_keys=True))


@dataclass(frozen=True)
class AdapterVersion:
    """One registered adapter: where it lives and its record."""

    version: str
    path: Path
    info: AdapterInfo

    @property
    def base(self) -> str:
        return self.info.base

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.info.audiences

    @property
    def created(self) -> str:
        return self.info.created

    @property
    def data_hash(self) -> str:
        return self.info.data_hash

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.info.metrics

    @property
    def status(self) -> str:
        return self.info.status


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate beats the current version, and the per-metric reasons."""

    promote: bool
    reasons: tuple[str, ...]


def gate(
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    *,
    tolerance: float = 0.01,
    metrics: Sequence[str] | None = None,
    lower_is_better: Sequence[str] = (),
) -> GateDecision:
    """Promote only if the candidate is better on at least one metric by more than `tolerance`
    and worse on none by more than `tolerance`. No current metrics: the candidate wins.

    `metrics` restricts the comparison (default: the numeric keys both dicts share). A metric is
    lower-is-better if named in `lower_is_better` or if its name says so (latency, loss, error...).
    """
    verdict = judge(candidate, current, rule="better", tolerance=tolerance, metrics=metrics, lower=lower_is_better)
    return GateDecision(verdict.promote, verdict.reasons)


class Registry:
    """Adapter versions under one folder; every state change is an atomic file replace."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ reading
    def versions(self) -> list[AdapterVersion]:
        if not self.root.is_dir():
            return []
        found = [self._read(p) for p in self.root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(found, key=lambda v: int(v.version[1:]))

    def get(self, version: str) -> AdapterVersion:
        folder = self.root / version
        if not _VERSION_RE.match(version) or not (folder / INFO_FILE).is_file():
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(f"unknown adapter version '{version}' in {self.root} (known: {known})")
        return self._read(folder)

    def current(self) -> AdapterVersion | None:
        pointer = self.root / CURRENT_FILE
        if not pointer.is_file():
            return None
        name = pointer.read_text(encoding="utf-8").strip()
        return self.get(name) if name else None

    def history(self) -> list[str]:
        path = self.root / HISTORY_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []

    def _read(self, folder: Path) -> AdapterVersion:
        return AdapterVersion(version=folder.name, path=folder, info=read_info(folder))

    # ------------------------------------------------------------------ writing
    def register(self, adapter_dir: Path, info: AdapterInfo) -> AdapterVersion:
        """Copy a PEFT adapter folder in as the next version (status candidate, not promoted)."""
        adapter_dir = Path(adapter_dir)
        missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
        if missing:
            raise RegistryError(f"{adapter_dir} is not a PEFT adapter folder: missing {', '.join(missing)}")
        self.root.mkdir(parents=True, exist_ok=True)
        numbers = [int(v.version[1:]) for v in self.versions()]
        numbers += [int(m.group(1)) for p in self.root.glob(".v*.tmp") if (m := re.match(r"\.v(\d+)\.tmp", p.name))]
        version = f"v{max(numbers, default=0) + 1}"
        staging = self.root / f".{version}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(adapter_dir, staging)
        record = dataclasses.replace(info, version=version, created=info.created or _now(), status="candidate",
                                     audiences=tuple(sorted(info.audiences)))
        (staging / INFO_FILE).write_text(json.dumps(record.to_json(), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(staging, self.root / version)  # the version appears complete or not at all
        return self.get(version)

    def update_info(self, version: str, **changes: Any) -> AdapterVersion:
        """Change fields of a version's record (AdapterInfo's names: a wrong one is a TypeError)."""
        entry = self.get(version)
        _write_info(entry.path, dataclasses.replace(entry.info, **changes))
        return self.get(version)

    def set_metrics(self, version: str, metrics: Mapping[str, Any]) -> AdapterVersion:
        return self.update_info(version, metrics=dict(metrics))

    def promote(self, version: str) -> AdapterVersion:
        """Make `version` the one served; the previous one stays in the history for rollback."""
        entry = self.get(version)
        if entry.status == "rejected":
            raise RegistryError(f"{version} was rejected by evaluation; register a new version instead")
        previous = self.current()
        if previous is not None and previous.version != version:
            self.update_info(previous.version, status="retired")
        history = [v for v in self.history() if v != version] + [version]
        atomic_write_text(self.root / HISTORY_FILE, json.dumps(history))
        entry = self.update_info(version, status="promoted", promoted=_now())
        atomic_write_text(self.root / CURRENT_FILE, version + "\n")
        return entry

    def promote_if_better(
        self, version: str, candidate: Mapping[str, Any], tolerance: float = 0.01, **kwargs: Any
    ) -> GateDecision:
        """Gate a candidate on metrics against the current version's; promote or reject it."""
        current = self.current()
        decision = gate(candidate, current.metrics if current else None, tolerance=tolerance, **kwargs)
        self.set_metrics(version, candidate)
        if decision.promote:
            self.promote(version)
        else:
            self.reject(version, {"reasons": list(decision.reasons)})
        return decision

    def reject(self, version: str, report: Mapping[str, Any]) -> AdapterVersion:
        """Mark a candidate that failed evaluation; it can no longer be promoted."""
        entry = self.get(version)
        if self.current() is not None and self.current().version == version:
            raise RegistryError(f"{version} is the promoted version; roll back before rejecting it")
        return self.update_info(entry.version, status="rejected", rejection=dict(report))

    def rollback(self) -> AdapterVersion | None:
        """Serve the previously promoted version again (None: back to the base model)."""
        history = self.history()
        current = self.current()
        if current is None:
            raise RegistryError("nothing to roll back: no adapter version is promoted")
        if history and history[-1] == current.version:
            history.pop()
        self.update_info(current.version, status="retired")
        previous = history[-1] if history else None
        atomic_write_text(self.root / HISTORY_FILE, json.dumps(history))
        if previous is None:
            (self.root / CURRENT_FILE).unlink(missing_ok=True)
            return None
        atomic_write_text(self.root / CURRENT_FILE, previous + "\n")
        return self.update_info(previous, status="promoted")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
