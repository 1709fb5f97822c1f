"""A local folder (or one file) as a source: ids are POSIX paths relative to the root, the fingerprint is the
SHA-256 of the file's bytes and its sidecar's, so a touched but unchanged file is not re-read."""

from __future__ import annotations

import hashlib
from pathlib import Path

from slm.connectors.base import Discovery, FailedItem, Fetched, SourceItem, SourceLimits, check_size
from slm.errors import DocumentError, KnowledgeBaseError


class FolderSource:
    def __init__(self, root: Path, limits: SourceLimits):
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise KnowledgeBaseError(f"nothing to ingest: {self.root} does not exist")
        self.uri = str(self.root)
        self.limits = limits

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else path.name

    def _path(self, item: SourceItem) -> Path:
        return self.root if self.root.is_file() else self.root / item.id

    def discover(self) -> Discovery:
        from slm.documents import discover, sidecar_path

        items: list[SourceItem] = []
        failed: list[FailedItem] = []
        for path in discover(self.root, list(self.limits.include), list(self.limits.exclude)):
            rel = self._rel(path)
            try:
                size = path.stat().st_size
                too_large = check_size(rel, size, self.limits)
                if too_large:
                    failed.append(too_large)
                    continue
                digest = hashlib.sha256(path.read_bytes())
                side = sidecar_path(path)
                if side.is_file():
                    digest.update(b"\0sidecar\0" + side.read_bytes())
            except OSError as exc:
                failed.append(FailedItem(rel, f"cannot read: {exc.strerror or exc}"))
                continue
            items.append(SourceItem(rel, path.name, digest.hexdigest(), size=size))
        return Discovery(tuple(items), tuple(failed))

    def fetch(self, item: SourceItem) -> Fetched:
        from slm.documents import read_sidecar

        path = self._path(item)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DocumentError(f"cannot read: {exc.strerror or exc}") from exc
        metadata, raw = read_sidecar(path)
        return Fetched(item, data, metadata, raw)

    def state(self) -> str | None:
        return None

    def close(self) -> None:
        pass
