"""Finding and loading source documents: one `Document` per file, with sections, pages and audiences.

Formats: HTML, Markdown, reStructuredText, plain text, PDF, Word (.docx); see `slm/kb/loaders/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Mapping

import yaml

from slm.access.labels import audiences_for, match_glob
from slm.config import AccessSettings
from slm.kb.corpus_files import check_name, display_path, read_under
from slm.errors import DocumentError, DocumentSkipped
from slm.kb.loaders.builder import Parsed
from slm.kb.loaders.limits import ExpansionLimits, load_yaml
from slm.kb.loaders.markdown import metadata_value
from slm.text.language import detect_language, normalise_language
from slm.types import Document

if TYPE_CHECKING:
    from slm.kb.loaders.ocr import OcrOptions

SIDECAR_SUFFIX = ".meta.yaml"
MAX_SIDECAR_BYTES = 1024 * 1024  # a sidecar holds a few labels; a megabyte is far past any real one


def _loader(
    suffix: str, ocr: "OcrOptions | None" = None, limits: ExpansionLimits | None = None
) -> Callable[[bytes], Parsed]:
    limits = limits or ExpansionLimits()
    # Imported on demand: pypdf and python-docx cost time that an HTML-only corpus never needs.
    if suffix in (".html", ".htm", ".xhtml"):
        from slm.kb.loaders.html import load_html

        return load_html
    if suffix in (".md", ".markdown"):
        from slm.kb.loaders.markdown import load_markdown

        return load_markdown
    if suffix == ".rst":
        from slm.kb.loaders.rst import load_rst

        return load_rst
    if suffix == ".txt":
        from slm.kb.loaders.text import load_text

        return load_text
    if suffix == ".pdf":
        from slm.kb.loaders.pdf import load_pdf

        return lambda raw: load_pdf(raw, ocr, limits)
    if suffix in IMAGE_SUFFIXES:
        from slm.kb.loaders.image import load_image

        return lambda raw: load_image(raw, ocr, limits)
    if suffix == ".docx":
        from slm.kb.loaders.docx import load_docx

        return lambda raw: load_docx(raw, limits)
    raise DocumentError(f"unsupported file type '{suffix or '(none)'}'")


IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})  # read by OCR
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".html", ".htm", ".xhtml", ".md", ".markdown", ".rst", ".txt", ".pdf", ".docx"}
) | IMAGE_SUFFIXES


def discover(root: Path, include: list[str], exclude: list[str]) -> list[Path]:
    """Supported files under `root` matching an include glob and no exclude glob, sorted.
    Sidecar `<file>.meta.yaml` files are metadata, never documents. Symbolic links are listed
    (a linked folder as one entry, never entered) so that reading refuses each one visibly."""
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in SUPPORTED_SUFFIXES else []

    def wanted(rel: str) -> bool:
        if include and not any(match_glob(p, rel) for p in include):
            return False
        return not any(match_glob(p, rel) for p in exclude)

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: a linked folder is never entered
        linked = {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))}
        dirnames[:] = sorted(d for d in dirnames if d not in linked)
        for name in sorted(linked):
            path = Path(dirpath) / name
            if wanted(path.relative_to(root).as_posix() + "/"):  # as a folder: `hr/**` and `**/.*/**` apply
                found.append(path)
        for name in sorted(filenames):
            if name.endswith(SIDECAR_SUFFIX) or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            path = Path(dirpath) / name
            if wanted(path.relative_to(root).as_posix()):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass(frozen=True)
class SourceFile:
    """One file's bytes and its sidecar's as read under the corpus root; `rel` is its document id."""

    rel: str
    raw: bytes
    sidecar: bytes | None  # None: no sidecar


def relative_id(path: Path, root: Path) -> str:
    """The document id of `path`: its POSIX path under `root` (the file's name when `root` is the file)."""
    path, root = Path(path), Path(root)
    if path == root:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise DocumentError(f"{display_path(str(path))} is not inside the corpus root {display_path(str(root))}") from None


def read_source(path: Path, root: Path, *, max_bytes: int) -> SourceFile:
    """Read `path` and its sidecar from under `root`, following no symbolic link (see
    `slm.kb.corpus_files`). Raises DocumentError (bad name, link, unreadable, too large, empty)."""
    path, root = Path(path), Path(root)
    rel = relative_id(path, root)
    check_name(rel)
    base = root.parent if path == root else root
    try:
        raw = read_under(base, rel, max_bytes=max_bytes)
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from exc
    if not raw:
        raise DocumentError("empty file")
    try:
        sidecar = read_under(base, rel + SIDECAR_SUFFIX, max_bytes=MAX_SIDECAR_BYTES, missing_ok=True)
    except (DocumentError, OSError) as exc:  # failing the file: a sidecar usually restricts who may see it
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DocumentError(f"sidecar {path.name}{SIDECAR_SUFFIX}: {reason}") from None
    return SourceFile(rel, raw, sidecar)


def parse_sidecar(raw: bytes, name: str) -> dict[str, str]:
    """A sidecar's keys (`audience: [hr]`, `title: …`) from its bytes, wherever they were stored."""
    try:
        data = load_yaml(raw.decode("utf-8-sig")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        # Failing loudly: a sidecar usually restricts who may see the file.
        raise DocumentError(f"sidecar {name} unreadable or not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise DocumentError(f"sidecar {name} must be a YAML mapping, e.g. 'audience: [hr]'")
    return {str(k): metadata_value(v) for k, v in data.items()}


def sidecar_of(source: SourceFile) -> tuple[dict[str, str], bytes]:
    """The sidecar's keys and raw bytes (empty when there is none)."""
    if source.sidecar is None:
        return {}, b""
    return parse_sidecar(source.sidecar, PurePosixPath(source.rel).name + SIDECAR_SUFFIX), source.sidecar


_SURROGATES = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """`value` with lone surrogates (a YAML `"\\ud800"`, a broken PDF font map) as U+FFFD: SQLite and
    JSON need valid text, and one character for one keeps every span in place."""
    return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value


def _storable(parsed: Parsed) -> Parsed:
    sections = tuple(
        dataclasses.replace(s, path=tuple(_text(p) for p in s.path), anchor=_text(s.anchor) if s.anchor else s.anchor)
        for s in parsed.sections
    )
    return dataclasses.replace(
        parsed,
        text=_text(parsed.text),
        title=_text(parsed.title) if parsed.title else parsed.title,
        sections=sections,
        metadata={_text(k): _text(v) for k, v in parsed.metadata.items()},
    )


def _title_from_filename(path: Path) -> str:
    stem = path.name.split(".")[0] or path.name
    return stem.replace("_", " ").replace("-", " ").strip().capitalize() or path.name


def load_document(
    path: Path,
    root: Path,
    *,
    max_bytes: int,
    access: AccessSettings | None = None,
    ocr: "OcrOptions | None" = None,
    limits: ExpansionLimits | None = None,
) -> Document:
    """Load one file under `root`, read through no symbolic link. Raises DocumentError (unsupported,
    unreadable, a link, too large, corrupt, expands too far, empty, undecodable) with a reason the caller
    can log before skipping the file.

    `content_hash` covers the file's bytes and its sidecar's, so a changed audience is a change."""
    path = Path(path)
    suffix = path.suffix.lower()
    _loader(suffix)  # an unsupported type is named before anything is read
    source = read_source(path, root, max_bytes=max_bytes)
    sidecar, sidecar_raw = sidecar_of(source)
    return document_from_bytes(
        source.rel, source.raw, suffix, sidecar=sidecar, sidecar_raw=sidecar_raw, access=access, ocr=ocr, limits=limits
    )


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
    limits: ExpansionLimits | None = None,
) -> Document:
    """One document from bytes of a known format, whatever source they came from (a folder, a website,
    a bucket, a repository). Raises DocumentError like `load_document`, and its DocumentSkipped for an image
    in which OCR finds no text. A sidecar's `language:` is the language scanned pages are OCR'd in."""
    sidecar = {_text(k): _text(v) for k, v in (sidecar or {}).items()}
    if ocr is not None and sidecar.get("language"):
        ocr = replace(ocr, language=sidecar["language"])
    loader = _loader(suffix, ocr, limits)
    if not raw:
        raise DocumentError("empty file")
    parsed = _storable(loader(raw))
    if not parsed.text.strip():
        # A picture without text is normal (logos, photos); a PDF, a page or a text file without any is broken.
        if suffix in IMAGE_SUFFIXES:
            raise DocumentSkipped("image without text (OCR found none)")
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
