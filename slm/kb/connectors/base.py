"""The one source interface: a source lists its items with a stable id and a cheap fingerprint, and fetches
the bytes of the ones ingestion wants; an item that is no longer listed has been deleted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Protocol
from urllib.parse import urlsplit, urlunsplit

from slm.access.labels import match_glob
from slm.kb.documents import SIDECAR_SUFFIX, SUPPORTED_SUFFIXES
from slm.errors import SourceError

# Remote sources name an item's format by its media type; ingestion reads formats by suffix.
MEDIA_SUFFIXES: Mapping[str, str] = {
    "text/html": ".html",
    "application/xhtml+xml": ".xhtml",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-rst": ".rst",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}


@dataclass(frozen=True)
class SourceLimits:
    """Bounds every source applies before bytes reach a loader."""

    max_bytes: int  # per document (ingest.max_file_mb)
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceItem:
    """One document as listed: `id` is stable across runs (a path relative to the root, an object key
    relative to the prefix, or a URL) and is what access rules match; `fingerprint` changes when it does."""

    id: str
    name: str  # what the format is read from: a file name, an object key, or the URL with a suffix for its media type
    fingerprint: str
    location: str = ""  # where a reader finds it (a URL, s3://bucket/key); defaults to the id
    size: int | None = None

    @property
    def suffix(self) -> str:
        dot = self.name.rfind(".")
        return self.name[dot:].lower() if dot > self.name.rfind("/") else ""


@dataclass(frozen=True)
class FailedItem:
    """An item the source listed but could not read: one logged failure, never a failed run."""

    id: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """What one listing found: the items, the ones that failed, and the source's version (a commit) if any."""

    items: tuple[SourceItem, ...]
    failed: tuple[FailedItem, ...] = ()
    version: str | None = None


@dataclass(frozen=True)
class Fetched:
    """An item's bytes and the metadata that came with it (a sidecar's keys, and its raw bytes for the hash)."""

    item: SourceItem
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    metadata_raw: bytes = b""


class Source(Protocol):
    """Every kind of document source. `uri` is what the knowledge base records as its root: never with
    credentials in it. `state()` is what the next run needs back (validators, a commit), as JSON text."""

    uri: str

    def discover(self) -> Discovery: ...

    def fetch(self, item: SourceItem) -> Fetched: ...

    def state(self) -> str | None: ...

    def close(self) -> None: ...


def selected(doc_id: str, limits: SourceLimits) -> bool:
    """Whether an id passes the include and exclude globs (`ingest.include` / `ingest.exclude`)."""
    if limits.include and not any(match_glob(p, doc_id) for p in limits.include):
        return False
    return not any(match_glob(p, doc_id) for p in limits.exclude)


def is_document_name(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(SIDECAR_SUFFIX):
        return False
    dot = lower.rfind(".")
    return dot > lower.rfind("/") and lower[dot:] in SUPPORTED_SUFFIXES


def combined_fingerprint(*parts: str) -> str:
    """One fingerprint from several (a document's and its sidecar's), order kept."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def check_size(doc_id: str, size: int | None, limits: SourceLimits) -> FailedItem | None:
    if size is not None and size > limits.max_bytes:
        return FailedItem(doc_id, f"too large: {size / 1e6:.1f} MB > limit {limits.max_bytes / 1e6:.1f} MB (ingest.max_file_mb)")
    return None


def redact_url(url: str) -> str:
    """A URL without user name or password, for logs and the knowledge base."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def refuse_credentials(url: str, hint: str) -> None:
    """Credentials in a URL would end up in the KB, the logs and shell history: refuse them."""
    parts = urlsplit(url)
    if parts.password is not None or (parts.username and parts.scheme in ("http", "https")):
        raise SourceError(f"{redact_url(url)}: credentials in the URL are not accepted; {hint}")

