"""reStructuredText loader: underlined (and overlined) titles become sections with docutils-style
slug anchors; heading levels follow the order adornment styles first appear, as in docutils."""

from __future__ import annotations

import re
import unicodedata

from slm.kb.loaders.builder import Parsed, SlugCounter, TextBuilder
from slm.kb.loaders.text import decode_text

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_TARGET = re.compile(r"^\.\. _[^:]+:\s*$")
_FIELD = re.compile(r"^:(\w[\w-]*):\s*(.*)$")
_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")
_LITERAL = re.compile(r"``([^`]+)``")
_REF = re.compile(r"`([^`]+)`_{1,2}")


def inline_text(line: str) -> str:
    """Roles, links and literals reduced to their text; `Run this::` reads `Run this:` as docutils shows it."""
    line = _ROLE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _LITERAL.sub(r"\1", line)
    line = _REF.sub(r"\1", line)
    if line.endswith("::"):
        line = line[:-2].rstrip() + (":" if line[:-2].strip() and not line[:-2].endswith(" ") else "")
    return line


def docutils_slug(title: str) -> str:
    """docutils `make_id`: ASCII-folded, lower-case, runs of other characters to one hyphen."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")


def load_rst(raw: bytes) -> Parsed:
    text, encoding = decode_text(raw)
    lines = [line.rstrip() for line in text.split("\n")]
    out = TextBuilder()
    slugs = SlugCounter()
    styles: list[tuple[str, bool]] = []
    para: list[str] = []
    metadata: dict[str, str] = {"encoding": encoding}
    body_started = False  # docinfo fields (`:audience: hr`) are read until the first paragraph

    def flush() -> None:
        nonlocal body_started
        if para:
            body_started = True
            out.block("\n".join(para), verbatim=any(p.startswith((" ", "\t")) for p in para))
            para.clear()

    def heading(title: str, style: tuple[str, bool]) -> None:
        if style not in styles:
            styles.append(style)
        flush()
        out.heading(styles.index(style) + 1, title, slugs.unique(docutils_slug(title)))

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after = lines[i + 2] if i + 2 < len(lines) else ""
        over = _ADORNMENT.match(line)
        if over and nxt.strip() and _ADORNMENT.match(after) and after[0] == line[0] and not para:
            heading(nxt.strip(), (line[0], True))
            i += 3
            continue
        under = _ADORNMENT.match(nxt)
        if (
            under
            and line.strip()
            and not line.startswith((" ", "\t"))
            and not para
            and len(nxt) >= min(len(line.strip()), 3)
            and not _ADORNMENT.match(line)
        ):
            heading(line.strip(), (nxt[0], False))
            i += 2
            continue
        if _TARGET.match(line):
            i += 1
            continue
        field = _FIELD.match(line)
        if field and not body_started and not para:  # docinfo fields around the title, e.g. :audience: hr
            metadata[field.group(1).lower()] = field.group(2).strip()
            i += 1
            continue
        if not line.strip():
            # indented literal blocks keep their blank lines: flush only when the block really ends
            if para and para[-1].startswith((" ", "\t")) and nxt.startswith((" ", "\t")):
                para.append("")
            else:
                flush()
            i += 1
            continue
        para.append(line if line.startswith((" ", "\t")) else inline_text(line))
        i += 1
    flush()
    body, sections = out.build()
    title = metadata.get("title") or (sections[0].path[0] if sections else None)
    return Parsed(text=body, title=title, sections=sections, metadata=metadata)
