"""What changed in the documents: by content hash against the store (this pass), from the ingestion log
(since the last training), and a cheap mtime/size snapshot for `--watch` polling."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# Ingestion-log statuses that mean a document's text entered, changed or left the knowledge base.
_CHANGE_STATUSES = ("added", "changed", "deleted", "failed", "skipped")
_NOT_LOADED = ("failed", "skipped")  # ingest logs these for a file it did not index (broken, or no text)


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


def detect_changes(source: Any, kb: Any) -> ChangeSet:
    """Compare what the source lists (a folder, a site, a bucket, a repository) with the store by the same
    fingerprint ingestion uses. Reads only; `slm.kb.ingest.ingest` then re-reads exactly these."""
    from slm.kb.connectors.spec import as_spec
    from slm.kb.ingest import open_kb_source, settings_signature, stored_fingerprint  # the one definition of "changed"

    known = kb.store.fingerprints()
    signature = settings_signature(kb)
    src = open_kb_source(kb, as_spec(source))
    try:
        discovery = src.discover()
    finally:
        src.close()
    added: list[str] = []
    modified: list[str] = []
    current = {item.id: stored_fingerprint(item, signature) for item in discovery.items}
    current.update({f.id: None for f in discovery.failed})  # unreadable now: ingestion will record the failure
    for doc_id, fingerprint in current.items():
        if doc_id not in known:
            added.append(doc_id)
        elif known[doc_id] != fingerprint:
            modified.append(doc_id)
    deleted = sorted(set(known) - set(current))
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
        elif status != "added" and status not in _NOT_LOADED:
            deleted.append(path)
        elif status in _NOT_LOADED and store.was_present_before(path, cutoff):
            deleted.append(path)
    return ChangeSet(tuple(added), tuple(modified), tuple(deleted))


def chunk_counts(store: Any, doc_ids: Sequence[str]) -> tuple[int, int]:
    """(chunks of these documents, chunks in the store)."""
    wanted = set(doc_ids)
    counts = {d.id: d.chunk_count for d in store.documents()}
    return sum(n for d, n in counts.items() if d in wanted), sum(counts.values())


class SourceWatcher:
    """Polls a folder by (size, mtime) of every file: cheap enough to run every few seconds; a content
    hash comparison (detect_changes) decides what really changed. A remote source (`settings` given) is
    polled by its listing's fingerprints (object ETags, blob ids, conditional GETs)."""

    def __init__(self, root: Any, settings: Any = None):
        from slm.kb.connectors.spec import as_spec

        self.spec = as_spec(root)
        self.root = Path(self.spec.uri) if self.spec.kind == "folder" else None
        self.settings = settings
        self._last: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        if self.root is None:
            return self._remote_snapshot()
        out: dict[str, Any] = {}
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

    def _remote_snapshot(self) -> dict[str, Any]:
        from slm.kb.connectors.spec import open_source
        from slm.kb.ingest import SOURCES_DIR

        # The KB's own cache folder: a Git mirror is fetched, not cloned again, on every poll.
        src = open_source(self.spec, self.settings.ingest, cache_dir=Path(self.settings.kb) / SOURCES_DIR)
        try:
            discovery = src.discover()
        finally:
            src.close()
        return {item.id: item.fingerprint for item in discovery.items} | {f.id: f.reason for f in discovery.failed}

    def changed(self) -> bool:
        """True on the first call and whenever a file appeared, vanished or was touched since the last."""
        now = self.snapshot()
        changed = now != self._last
        self._last = now
        return changed
