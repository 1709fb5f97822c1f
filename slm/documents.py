"""Finding and loading source documents: one `Document` per file, with sections, pages and audiences.

Formats: HTML, Markdown, reStructuredText, plain text, PDF, Word (.docx); see `slm/loaders/`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Mapping

import yaml

from slm.access import audiences_for, match_glob
from slm.config import AccessSettings
from slm.errors import DocumentError
from slm.loaders.builder import Parsed
from slm.loaders.markdown import metadata_value
from slm.text.language import detect_language, normalise_language
from slm.types import Document

if TYPE_CHECKING:
    from slm.loaders.ocr import OcrOptions

SIDECAR_SUFFIX = ".meta.yaml"


def _loader(suffix: str, ocr: "OcrOptions | None" = None) -> Callable[[bytes], Parsed]:
    # Imported on demand: pypdf and python-docx cost time that an HTML-only corpus never needs.
    if suffix in (".html", ".htm", ".xhtml"):
        from slm.loaders.html import load_html

        return load_html
    if suffix in (".md", ".markdown"):
        from slm.loaders.markdown import load_markdown

        return load_markdown
    if suffix == ".rst":
        from slm.loaders.rst import load_rst

        return load_rst
    if suffix == ".txt":
        from slm.loaders.text import load_text

        return load_text
    if suffix == ".pdf":
        from slm.loaders.pdf import load_pdf

        return lambda raw: load_pdf(raw, ocr)
    if suffix in IMAGE_SUFFIXES:
        from slm.loaders.image import load_image

        return lambda raw: load_image(raw, ocr)
    if suffix == ".docx":
        from slm.loaders.docx import load_docx

        return load_docx
    raise DocumentError(f"unsupported file type '{suffix or '(none)'}'")


IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})  # read by OCR
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".html", ".htm", ".xhtml", ".md", ".markdown", ".rst", ".txt", ".pdf", ".docx"}
) | IMAGE_SUFFIXES


def discover(root: Path, include: list[str], exclude: list[str]) -> list[Path]:
    """Supported files under `root` matching an include glob and no exclude glob, sorted.
    Sidecar `<file>.meta.yaml` files are metadata, never documents."""
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in SUPPORTED_SUFFIXES else []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(SIDECAR_SUFFIX) or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if include and not any(match_glob(p, rel) for p in include):
                continue
            if any(match_glob(p, rel) for p in exclude):
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> tuple[dict[str, str], bytes]:
    """Metadata from `<file>.meta.yaml` beside `path` (empty when there is none) and its raw bytes."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}, b""
    try:
        raw = side.read_bytes()
    except OSError as exc:
        raise DocumentError(f"sidecar {side.name} unreadable: {exc}".splitlines()[0]) from exc
    return parse_sidecar(raw, side.name), raw


def parse_sidecar(raw: bytes, name: str) -> dict[str, str]:
    """A sidecar's keys (`audience: [hr]`, `title: …`) from its bytes, wherever they were stored."""
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        # Failing loudly: a sidecar usually restricts who may see the file.
        raise DocumentError(f"sidecar {name} unreadable or not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise DocumentError(f"sidecar {name} must be a YAML mapping, e.g. 'audience: [hr]'")
    return {str(k): metadata_value(v) for k, v in data.items()}


def _title_from_filename(path: Path) -> str:
    stem = path.name.split(".")[0] or path.name
    return stem.replace("_", " ").replace("-", " ").strip().capitalize() or path.name


def load_document(
    path: Path, root: Path, *, max_bytes: int, access: AccessSettings | None = None, ocr: "OcrOptions | None" = None
) -> Document:
    """Load one file. Raises DocumentError (unsupported, unreadable, too large, corrupt, empty,
    undecodable) with a reason the caller can log before skipping the file.

    `content_hash` covers the file's bytes and its sidecar's, so a changed audience is a change."""
    path = Path(path)
    root = Path(root)
    try:
        rel = path.relative_to(root).as_posix() if path != root else path.name
    except ValueError:
        raise DocumentError(f"{path} is not inside the corpus root {root}") from None
    suffix = path.suffix.lower()
    loader = _loader(suffix)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise DocumentError(f"too large: {size / 1e6:.1f} MB > limit {max_bytes / 1e6:.1f} MB (ingest.max_file_mb)")
    if size == 0:
        raise DocumentError("empty file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from exc
    sidecar, sidecar_raw = read_sidecar(path)
    return document_from_bytes(rel, raw, suffix, sidecar=sidecar, sidecar_raw=sidecar_raw, access=access, ocr=ocr)


def document_from_bytes(
    doc_id: str,
    raw: bytes,
    suffix: str,
    *,
    source: str | None = None,
    sidecar: Mapping[str, str] | None = None,
    sidecar_raw: bytes = b"",
    access: AccessSettings | None = None,
    ocr: "OcrOptions | None" = None,
) -> Document:
    """One document from bytes of a known format, whatever source they came from (a folder, a website,
    a bucket, a repository). Raises DocumentError like `load_document`. A sidecar's `language:` is the
    language scanned pages are OCR'd in."""
    sidecar = dict(sidecar or {})
    if ocr is not None and sidecar.get("language"):
        ocr = replace(ocr, language=sidecar["language"])
    loader = _loader(suffix, ocr)
    if not raw:
        raise DocumentError("empty file")
    parsed = loader(raw)
    if not parsed.text.strip():
        raise DocumentError("no text extracted (empty, only markup, or a scanned page in which OCR found no text)")
    metadata = {**parsed.metadata, **sidecar}
    metadata["format"] = suffix.lstrip(".")
    name = doc_id.rstrip("/").rsplit("/", 1)[-1] or doc_id
    title = (sidecar.get("title") or parsed.title or "").strip() or _title_from_filename(Path(name))
    digest = hashlib.sha256(raw)
    if sidecar_raw:
        digest.update(b"\0sidecar\0" + sidecar_raw)
    return Document(
        id=doc_id,
        title=" ".join(title.split()),
        text=parsed.text,
        source=source or doc_id,
        content_hash=digest.hexdigest(),
        audiences=audiences_for(doc_id, metadata, access or AccessSettings()),
        sections=parsed.sections,
        pages=parsed.pages,
        metadata=metadata,
        language=document_language(parsed.text, metadata),
        tables=parsed.tables,
    )


def document_language(text: str, metadata: Mapping[str, str]) -> str:
    """`language:` from the sidecar or front matter when given (it then holds for every chunk), else detected."""
    declared = normalise_language(metadata.get("language"))
    return declared or detect_language(text, default="en")
