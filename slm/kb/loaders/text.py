"""Plain-text loader and the text decoding every text format shares."""

from __future__ import annotations

from slm.errors import DocumentError
from slm.kb.loaders.builder import Parsed

# Tried in order. cp1252 is the stated fallback for legacy Windows files; it is strict (five
# byte values are undefined), so bytes that fit none of these are reported, not garbled.
TEXT_ENCODINGS = ("utf-8-sig", "cp1252")


def decode_text(raw: bytes) -> tuple[str, str]:
    """Text and the encoding used: UTF-8 (with or without BOM), UTF-16 with a BOM, else Windows-1252."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise DocumentError(f"undecodable: UTF-16 byte-order mark but invalid UTF-16 ({exc.reason})") from exc
    if b"\x00" in raw[:8192]:
        raise DocumentError("undecodable: contains NUL bytes, looks like a binary file")
    for encoding in TEXT_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return normalize_newlines(text), ("utf-8" if encoding == "utf-8-sig" else encoding)
    raise DocumentError("undecodable: text is neither UTF-8 nor Windows-1252; convert it to UTF-8")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text(raw: bytes) -> Parsed:
    text, encoding = decode_text(raw)
    lines = [line.rstrip() for line in text.split("\n")]
    body = "\n".join(lines).strip("\n")
    return Parsed(text=body, title=_title_line(body), metadata={"encoding": encoding})


def _title_line(body: str) -> str | None:
    """A short first line standing alone (followed by a blank line) reads as the title."""
    first, _, rest = body.partition("\n")
    if first.strip() and len(first) <= 100 and (not rest or rest.startswith("\n")):
        return first.strip()
    return None
