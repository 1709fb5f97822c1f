"""Versioned adapter registry in `<kb>/adapters/`: register, promote (explicit or gated), reject, roll back.

Layout: `<root>/<version>/` holds a plain PEFT adapter (adapter_config.json + adapter_model.safetensors)
plus `info.json` (base spec, audiences, data hash, training config, metrics, status). `<root>/current`
names the promoted version and `<root>/history.json` the promotion order; both are replaced atomically.
"""

from __future__ import annotations

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
class AdapterVersion:
    """One registered adapter: where it lives and what it was trained from."""

    version: str
    path: Path
    base: str
    audiences: tuple[str, ...]
    created: str
    data_hash: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    status: str = "candidate"  # candidate | promoted | retired | rejected
    info: Mapping[str, Any] = field(default_factory=dict)


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
        try:
            info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{folder / INFO_FILE} is unreadable: {exc}") from exc
        return AdapterVersion(
            version=folder.name,
            path=folder,
            base=info.get("base", ""),
            audiences=tuple(info.get("audiences", ())),
            created=info.get("created", ""),
            data_hash=info.get("data_hash", ""),
            metrics=info.get("metrics", {}),
            status=info.get("status", "candidate"),
            info=info,
        )

    # ------------------------------------------------------------------ writing
    def register(self, adapter_dir: Path, info: Mapping[str, Any]) -> AdapterVersion:
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
        record = dict(info)
        record.update(
            version=version,
            created=record.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            status="candidate",
        )
        record.setdefault("metrics", {})
        record["audiences"] = sorted(record.get("audiences", ()))
        (staging / INFO_FILE).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(staging, self.root / version)  # the version appears complete or not at all
        return self.get(version)

    def update_info(self, version: str, **changes: Any) -> AdapterVersion:
        entry = self.get(version)
        info = dict(entry.info)
        info.update(changes)
        atomic_write_text(entry.path / INFO_FILE, json.dumps(info, indent=2, sort_keys=True))
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
