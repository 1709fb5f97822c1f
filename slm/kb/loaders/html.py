"""HTML loader: keeps the main body (Sphinx `div[role=main]`, `main`, `article`, else `body`),
drops navigation (by role, tag, and by structure: navigation_blocks) and boilerplate, keeps headings with
their anchors and code with its newlines."""

from __future__ import annotations

import re

from lxml import etree

from slm.errors import DocumentError
from slm.kb.loaders.builder import Parsed, TextBuilder

_DROP_TAGS = frozenset(
    "script style nav header footer aside noscript template form svg button iframe select head".split()
)
_DROP_CLASSES = frozenset({"sphinxsidebar", "related", "headerlink", "footer", "clearer"})
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
# A generator's navigation bar (DocBook's Prev/Up/Home/Next, texinfo's, Javadoc's ...) is found by structure,
# not by one generator's class names: links that declare a navigation role (an access key, or rel="prev|next|
# up|home...") gathered in a block of little text. Without this, DocBook pages ended their last chunk with the
# neighbouring chapters' titles ("... Knoppix Up Home Next A.6."): 13 of 748 Debian Reference chunks, 16 of 305
# in the Chinese Debian FAQ.
_NAV_RELS = frozenset("prev previous next up home start first last contents index top".split())
_NAV_BLOCKS = frozenset("div table p ul ol nav section header footer center".split())
_NAV_MAX_CHARS = 300
_NAV_ONE_LINK_CHARS = 120  # a first or last page has one link ("Next"): a block that short around it is a bar too
_BLOCK_TAGS = frozenset(
    "p div section article main blockquote ul ol dl table thead tbody tfoot figure figcaption hr "
    "address details summary center fieldset caption body html dt dd".split()
)
_LINE_TAGS = frozenset("li tr".split())
_CELL_TAGS = frozenset({"td", "th"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SECTION_TAGS = frozenset({"section", "div"})
_BR = "\x00"
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)


def _classes(el: etree._Element) -> set[str]:
    value = el.get("class")
    return set(value.split()) if value else set()


def _dropped(el: etree._Element, tag: str, keep_header: bool = False) -> bool:
    if tag in _DROP_TAGS:
        return not (keep_header and tag == "header")
    if el.get("role") in _DROP_ROLES:
        return True
    value = el.get("class")
    return bool(value) and not _DROP_CLASSES.isdisjoint(value.split())


def _is_navigation_link(el: etree._Element) -> bool:
    return bool(el.get("accesskey")) or not _NAV_RELS.isdisjoint((el.get("rel") or "").lower().split())


def navigation_blocks(root: etree._Element) -> set[etree._Element]:
    """The blocks that are navigation bars: for each navigation link, the outermost block around it with at most
    _NAV_MAX_CHARS of text that holds two such links, or one in at most _NAV_ONE_LINK_CHARS (so a page's content
    is never taken for one)."""
    found: set[etree._Element] = set()
    for link in (a for a in root.iter("a") if _is_navigation_link(a)):
        best = None
        node = link.getparent()
        while node is not None and isinstance(node.tag, str) and node.tag.lower() not in ("body", "html"):
            if node.tag.lower() in _NAV_BLOCKS:
                chars = len(" ".join("".join(node.itertext()).split()))
                if chars > _NAV_MAX_CHARS:
                    break
                links = sum(1 for a in node.iter("a") if _is_navigation_link(a))
                if links >= 2 or chars <= _NAV_ONE_LINK_CHARS:
                    best = node
            node = node.getparent()
        if best is not None:
            found.add(best)
    return found


def _main_element(root: etree._Element) -> etree._Element:
    for xpath in (
        '//*[@role="main"]',
        '//div[contains(concat(" ", normalize-space(@class), " "), " body ")]',
        "//main",
        "//article",
        "//body",
    ):
        found = root.xpath(xpath)
        if found:
            return found[0]
    return root


def _heading_anchor(el: etree._Element) -> str | None:
    """The heading's own permalink (`<a class="headerlink" href="#x">`, Sphinx and MkDocs) names the anchor
    the site links to; without one: Sphinx's id on the enclosing `<section>` (or `<div class="section">`),
    else the id on the heading itself or on an empty `<span id>`/`<a name>` just before it. (Django's Sphinx
    gives the section `s-x` and the permalink `#x`: only the permalink matches the links.)"""
    for link in el.iter("a"):
        href = link.get("href") or ""
        if "headerlink" in _classes(link) and href.startswith("#") and len(href) > 1:
            return href[1:]
    parent = el.getparent()
    if parent is not None and parent.tag in _SECTION_TAGS and parent.get("id"):
        first_heading = next((c for c in parent if isinstance(c.tag, str) and c.tag in _HEADINGS), None)
        if first_heading is el:
            return parent.get("id")
    if el.get("id"):
        return el.get("id")
    prev = el.getprevious()
    while prev is not None and isinstance(prev.tag, str) and prev.tag in ("span", "a") and not (prev.text or "").strip():
        if prev.get("id") or prev.get("name"):
            return prev.get("id") or prev.get("name")
        prev = prev.getprevious()
    for inner in el.iter("a", "span"):
        if (inner.get("id") or inner.get("name")) and "headerlink" not in _classes(inner):
            return inner.get("id") or inner.get("name")
    return None


def _inline_text(el: etree._Element) -> str:
    """Visible text of an element without dropped parts (e.g. the headerlink pilcrow)."""
    parts: list[str] = []

    def visit(node: etree._Element) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if isinstance(child.tag, str) and not _dropped(child, child.tag.lower()):
                visit(child)
            if child.tail:
                parts.append(child.tail)

    visit(el)
    return "".join(parts)


class _Walker:
    def __init__(self, keep_header: bool, skip: set[etree._Element] = frozenset()) -> None:
        # Inside <main>/<article> a <header> holds the article's own title, not the site's banner.
        self.keep_header = keep_header
        self.skip = skip  # navigation bars (navigation_blocks)
        self.out = TextBuilder()
        self.buf: list[str] = []
        self.first_h1: str | None = None

    def flush(self, tight: bool) -> None:
        if not self.buf:
            return
        raw = "".join(self.buf)
        self.buf.clear()
        text = _SPACES.sub(" ", raw)
        if _BR in text:
            text = "\n".join(line.strip() for line in text.split(_BR))
        self.out.block(text, tight=tight)

    def walk(self, el: etree._Element, tight: bool) -> None:
        tag = el.tag
        if not isinstance(tag, str):  # comments, processing instructions
            return
        tag = tag.lower()
        if _dropped(el, tag, self.keep_header) or el in self.skip:
            return
        level = _HEADINGS.get(tag)
        if level is not None:
            self.flush(tight)
            title = " ".join(_inline_text(el).split())
            if level == 1 and self.first_h1 is None and title:
                self.first_h1 = title
            self.out.heading(level, title, _heading_anchor(el))
            return
        if tag == "pre":
            self.flush(tight)
            self.out.block("".join(el.itertext()).expandtabs(8), verbatim=True)
            return
        if tag == "br":
            self.buf.append(_BR)
            return
        if tag in _CELL_TAGS:  # a cell is one line of its row, whatever blocks it holds
            if el.getprevious() is not None:
                self.buf.append(" | ")
            self.buf.append(" ".join(_inline_text(el).split()))
            return
        is_block = tag in _BLOCK_TAGS or tag in _LINE_TAGS
        if is_block:
            self.flush(tight)
        inner_tight = tight or tag in _LINE_TAGS
        if el.text:
            self.buf.append(el.text)
        for child in el:
            self.walk(child, inner_tight)
            if child.tail:
                self.buf.append(child.tail)
        if is_block:
            self.flush(inner_tight)


def decode_html(raw: bytes) -> tuple[str, str]:
    """HTML bytes as text: UTF-8 (BOM allowed), else the declared `charset`, else Windows-1252."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    match = re.search(rb"""charset=["']?([A-Za-z0-9_.:-]+)""", raw[:4096])
    for encoding in ([match.group(1).decode("ascii")] if match else []) + ["cp1252"]:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError):
            continue
    raise DocumentError("undecodable HTML: not UTF-8, not its declared charset, not Windows-1252")


def load_html(raw: bytes) -> Parsed:
    text, encoding = decode_html(raw)
    text = _XML_DECL.sub("", text, count=1)
    if not text.strip():
        raise DocumentError("empty file")
    try:
        # Plain etree elements: lxml.html's per-element class lookup costs a third of the parse.
        root = etree.fromstring(text, _PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as exc:
        raise DocumentError(f"not parseable as HTML: {exc}") from exc
    if root is None:
        raise DocumentError("no text extracted (no HTML elements)")
    title_el = root.find(".//title")
    page_title = " ".join(("".join(title_el.itertext()) if title_el is not None else "").split())
    metadata = {"encoding": encoding}
    for meta in root.iterfind(".//meta"):
        name, content = (meta.get("name") or "").strip().lower(), (meta.get("content") or "").strip()
        if name and content and name not in ("viewport", "generator"):
            metadata[name] = content  # e.g. <meta name="audience" content="hr">
    main = _main_element(root)
    walker = _Walker(keep_header=main.tag not in ("body", "html"), skip=navigation_blocks(main))
    walker.walk(main, False)
    walker.flush(False)
    body, sections = walker.out.build()
    title = page_title or walker.first_h1 or (sections[0].path[-1] if sections else None)
    if page_title and walker.first_h1 and page_title.startswith(walker.first_h1):
        title = walker.first_h1  # "Programming FAQ — Python 3.11 documentation" -> "Programming FAQ"
    return Parsed(text=body, title=title, sections=sections, metadata=metadata)
