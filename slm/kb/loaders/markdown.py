"""Markdown loader: YAML front matter becomes metadata, ATX/setext headings become sections with
GitHub-style slug anchors, fenced code keeps its lines, inline markup is reduced to its text."""

from __future__ import annotations

import re

import yaml

from slm.errors import DocumentError
from slm.kb.loaders.builder import Parsed, SlugCounter, TextBuilder
from slm.kb.loaders.limits import load_yaml
from slm.kb.loaders.text import decode_text

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)


def github_slug(title: str) -> str:
    """GitHub's heading anchor: lower-case, punctuation removed, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return slug.replace(" ", "-")


def inline_text(line: str) -> str:
    line = _IMAGE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _REF_LINK.sub(r"\1", line)
    line = _STRONG.sub(r"\2", line)
    return _CODE_SPAN.sub(r"\1", line)


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """`---` YAML `---` at the very top -> (metadata as strings, rest of the text)."""
    if not text.startswith("---\n"):
        return {}, text
    match = re.search(r"^(?:---|\.\.\.)[ \t]*$", text[4:], re.M)
    if match is None:
        return {}, text
    block, rest = text[4 : 4 + match.start()], text[4 + match.end() :]
    try:
        data = load_yaml(block) or {}
    except yaml.YAMLError as exc:
        raise DocumentError(f"front matter is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise DocumentError("front matter must be a YAML mapping (key: value lines)")
    return {str(k): metadata_value(v) for k, v in data.items()}, rest


def metadata_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def load_markdown(raw: bytes) -> Parsed:
    text, encoding = decode_text(raw)
    metadata, text = split_front_matter(text)
    text = _HTML_COMMENT.sub("", text)
    out = TextBuilder()
    slugs = SlugCounter()
    para: list[str] = []
    code: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if para:
            out.block("\n".join(para))
            para.clear()

    for line in text.split("\n"):
        line = line.rstrip()
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                out.block("\n".join(code), verbatim=True)
                code.clear()
                fence = None
            else:
                code.append(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            flush()
            fence = opening.group(1)
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            title = inline_text(atx.group(2) or "")
            out.heading(len(atx.group(1)), title, slugs.unique(github_slug(title)))
            continue
        setext = _SETEXT.match(line)
        if setext and para and not para[-1].lstrip().startswith(("- ", "* ", "+ ", ">")):
            title = inline_text(" ".join(p.strip() for p in para))
            para.clear()
            out.heading(1 if setext.group(1)[0] == "=" else 2, title, slugs.unique(github_slug(title)))
            continue
        if not line.strip():
            flush()
            continue
        para.append(inline_text(line))
    flush()
    if code:  # an unclosed fence runs to the end of the file
        out.block("\n".join(code), verbatim=True)
    body, sections = out.build()
    title = metadata.get("title") or (sections[0].path[0] if sections else None)
    return Parsed(text=body, title=title, sections=sections, metadata={**metadata, "encoding": encoding})
