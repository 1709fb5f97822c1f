"""What changed in the documents: by content hash against the store (this pass), from the ingestion log
(since the last training), and a cheap mtime/size snapshot for `--watch` polling."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# Ingestion-log statuses that mean a document's text entered, changed or left the knowledge base.
_CHANGE_STATUSES = ("added", "changed", "deleted", "failed")


@dataclass(frozen=True)
class ChangeSet:
    """Document ids (paths relative to the source root) by kind of change."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.deleted)

    @property
    def with_text(self) -> tuple[str, ...]:
        """Documents whose (new) text is in the knowledge base: what a new adapter should learn."""
        return (*self.added, *self.modified)

    def describe(self) -> str:
        return f"{len(self.added)} added, {len(self.modified)} modified, {len(self.deleted)} deleted"

    def to_json(self) -> dict[str, list[str]]:
        return {"added": list(self.added), "modified": list(self.modified), "deleted": list(self.deleted)}

    @classmethod
    def from_json(cls, data: Any) -> "ChangeSet":
        data = data or {}
        return cls(tuple(data.get("added", ())), tuple(data.get("modified", ())), tuple(data.get("deleted", ())))


def detect_changes(root: Path, kb: Any) -> ChangeSet:
    """Compare the files under `root` with the store by the same fingerprint ingestion uses (bytes,
    sidecar, chunking/access settings). Reads only; `slm.ingest.ingest` then re-reads exactly these."""
    from slm.documents import discover
    from slm.ingest import file_fingerprint, settings_signature  # the one definition of "changed"

    root = Path(root).expanduser().resolve()
    settings = kb.settings.ingest
    known = kb.store.fingerprints()
    signature = settings_signature(kb)
    added: list[str] = []
    modified: list[str] = []
    seen: set[str] = set()
    for path in discover(root, settings.include, settings.exclude):
        rel = path.relative_to(root).as_posix() if path != root else path.name
        seen.add(rel)
        try:
            fingerprint = file_fingerprint(path, signature)
        except OSError:
            fingerprint = None  # unreadable now: ingestion will record the failure
        if rel not in known:
            added.append(rel)
        elif known[rel] != fingerprint:
            modified.append(rel)
    deleted = sorted(set(known) - seen)
    return ChangeSet(tuple(sorted(added)), tuple(sorted(modified)), tuple(deleted))


def changes_since(store: Any, cutoff: float) -> ChangeSet:
    """Net document changes the ingestion log recorded after `cutoff` (unix time), judged against what
    the store holds now: a document added then deleted in between does not count."""
    rows = store.logged_since(cutoff, _CHANGE_STATUSES)
    first: dict[str, str] = {}
    for path, status in rows:
        first.setdefault(path, status)
    present = set(store.fingerprints())
    added, modified, deleted = [], [], []
    for path, status in sorted(first.items()):
        if path in present:
            (added if status == "added" else modified).append(path)
        elif status != "added" and status != "failed":
            deleted.append(path)
        elif status == "failed" and store.was_present_before(path, cutoff):
            deleted.append(path)
    return ChangeSet(tuple(added), tuple(modified), tuple(deleted))


def chunk_counts(store: Any, doc_ids: Sequence[str]) -> tuple[int, int]:
    """(chunks of these documents, chunks in the store)."""
    wanted = set(doc_ids)
    counts = {d.id: d.chunk_count for d in store.documents()}
    return sum(n for d, n in counts.items() if d in wanted), sum(counts.values())


class SourceWatcher:
    """Polls a folder by (size, mtime) of every file: cheap enough to run every few seconds; a content
    hash comparison (detect_changes) decides what really changed."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._last: dict[str, tuple[int, int]] | None = None

    def snapshot(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder) / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                out[path.relative_to(self.root).as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    def changed(self) -> bool:
        """True on the first call and whenever a file appeared, vanished or was touched since the last."""
        now = self.snapshot()
        changed = now != self._last
        self._last = now
        return changed
