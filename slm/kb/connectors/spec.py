"""What the user named as the source (`slm ingest SOURCE` and its options), parsed once, kept in the KB so
`slm retrain` follows the same source, and opened into a `Source`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from slm.config import IngestSettings
from slm.kb.connectors.base import Source, SourceLimits
from slm.errors import ConfigError

SPEC_KEY = "source_spec"  # KB meta key holding the spec's JSON


@dataclass(frozen=True)
class SourceSpec:
    """A folder path, `https://…` (one page, or a site with `crawl`), `s3://bucket/prefix`, or
    `git+https://…@ref` / `git+file://…@ref`. Holds no credentials: those come from the environment."""

    uri: str
    crawl: bool = False
    max_pages: int | None = None  # None: ingest.crawl_max_pages
    max_depth: int | None = None  # None: ingest.crawl_max_depth
    endpoint_url: str | None = None  # S3-compatible store (MinIO, Ceph, ...); None: AWS

    @property
    def kind(self) -> str:
        if self.uri.startswith("git+"):
            return "git"
        if self.uri.startswith("s3://"):
            return "s3"
        if self.uri.startswith(("http://", "https://")):
            return "web"
        return "folder"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SourceSpec":
        return cls(**json.loads(text))


def as_spec(source: "SourceSpec | str | Path") -> SourceSpec:
    if isinstance(source, SourceSpec):
        return source
    return SourceSpec(str(source))


def stored_spec(kb) -> SourceSpec | None:
    """The source the KB was last ingested from (a folder KB from before specs existed: its root)."""
    text = kb.store.get_meta(SPEC_KEY)
    if text:
        return SourceSpec.from_json(text)
    return SourceSpec(kb.root) if kb.root else None


def limits_for(settings: IngestSettings) -> SourceLimits:
    return SourceLimits(
        max_bytes=int(settings.max_file_mb * 1024 * 1024),
        include=tuple(settings.include),
        exclude=tuple(settings.exclude),
    )


def open_source(spec: SourceSpec, settings: IngestSettings, *, cache_dir: Path, state: str | None = None) -> Source:
    """The `Source` for a spec. `cache_dir` (inside the KB) holds what a source keeps between runs (a Git
    mirror); `state` is what the source's `state()` returned last run."""
    limits = limits_for(settings)
    if spec.endpoint_url and spec.kind != "s3":
        raise ConfigError("--endpoint-url is for s3:// sources only")
    if spec.crawl and spec.kind != "web":
        raise ConfigError("--crawl is for http(s):// sources only")
    if spec.kind == "git":
        from slm.kb.connectors.git import GitSource

        return GitSource(spec.uri, limits, cache_dir=cache_dir)
    if spec.kind == "s3":
        from slm.kb.connectors.s3 import S3Source

        return S3Source(spec.uri, limits, endpoint_url=spec.endpoint_url)
    if spec.kind == "web":
        from slm.kb.connectors.web import WebSource

        depth = (spec.max_depth if spec.max_depth is not None else settings.crawl_max_depth) if spec.crawl else 0
        pages = (spec.max_pages if spec.max_pages is not None else settings.crawl_max_pages) if spec.crawl else 1
        return WebSource(spec.uri, limits, max_pages=pages, max_depth=depth,
                         timeout_s=settings.crawl_timeout_s, state=state)
    from slm.kb.connectors.folder import FolderSource

    return FolderSource(Path(spec.uri), limits)
