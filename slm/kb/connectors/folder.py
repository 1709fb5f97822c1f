"""A local folder (or one file) as a source: ids are POSIX paths relative to the root, the fingerprint is the
SHA-256 of the file's bytes and its sidecar's, so a touched but unchanged file is not re-read. Files are read
through no symbolic link (`slm.kb.documents.read_source`): a link is one failed item, never followed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from slm.kb.connectors.base import Discovery, FailedItem, Fetched, SourceItem, SourceLimits
from slm.kb.corpus_files import display_path
from slm.errors import DocumentError, KnowledgeBaseError


class FolderSource:
    def __init__(self, root: Path, limits: SourceLimits):
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise KnowledgeBaseError(f"nothing to ingest: {display_path(str(self.root))} does not exist")
        if display_path(str(self.root)) != str(self.root):
            raise KnowledgeBaseError(f"the folder name {display_path(str(self.root))} is not valid UTF-8: rename it")
        self.uri = str(self.root)
        self.limits = limits

    def _path(self, item: SourceItem) -> Path:
        return self.root if self.root.is_file() else self.root / item.id

    def discover(self) -> Discovery:
        from slm.kb.documents import discover, read_source, relative_id

        items: list[SourceItem] = []
        failed: list[FailedItem] = []
        for path in discover(self.root, list(self.limits.include), list(self.limits.exclude)):
            rel = relative_id(path, self.root)
            try:
                source = read_source(path, self.root, max_bytes=self.limits.max_bytes)
            except DocumentError as exc:  # a link, a bad name, too large, unreadable: one failed item
                failed.append(FailedItem(display_path(rel), display_path(str(exc))))
                continue
            digest = hashlib.sha256(source.raw)
            if source.sidecar is not None:
                digest.update(b"\0sidecar\0" + source.sidecar)
            items.append(SourceItem(rel, path.name, digest.hexdigest(), size=len(source.raw)))
        return Discovery(tuple(items), tuple(failed))

    def fetch(self, item: SourceItem) -> Fetched:
        from slm.kb.documents import read_source, sidecar_of

        source = read_source(self._path(item), self.root, max_bytes=self.limits.max_bytes)  # again: no links
        metadata, raw = sidecar_of(source)
        return Fetched(item, source.raw, metadata, raw)

    def state(self) -> str | None:
        return None

    def close(self) -> None:
        pass
