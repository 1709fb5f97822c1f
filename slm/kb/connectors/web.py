"""A website as a source: a breadth-first crawl from one page that never leaves its origin (redirects
included) nor the folder of the start page, honours robots.txt, stops at max pages / depth, and on a
re-crawl asks with If-None-Match / If-Modified-Since so an unchanged page costs a 304."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from slm.kb.connectors.base import (
    MEDIA_SUFFIXES,
    Discovery,
    FailedItem,
    Fetched,
    SourceItem,
    SourceLimits,
    refuse_credentials,
    selected,
)
from slm.errors import DocumentError, SourceError

USER_AGENT = "slm-ingest/0.1 (+https://github.com/; a knowledge-base crawler)"
ROBOTS_AGENT = "slm-ingest"
MAX_REDIRECTS = 10
MAX_CRAWL_DELAY_S = 10.0  # a robots.txt Crawl-delay above this is capped: 500 pages must finish the same day
_HTML = (".html", ".xhtml", ".htm")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str:
    """Scheme and host lower-cased, default port and fragment dropped, an empty path made `/`."""
    url, _ = urldefrag(url.strip())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    if parts.port and parts.port != _DEFAULT_PORTS.get(scheme):
        host += f":{parts.port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


@dataclass(frozen=True)
class _Page:
    """One answered request: a body (200), or the validators' page unchanged (304), or a failure."""

    url: str  # after redirects
    status: int
    body: bytes | None = None
    media: str = ""
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None


class WebSource:
    def __init__(self, uri: str, limits: SourceLimits, *, max_pages: int, max_depth: int, timeout_s: float,
                 state: str | None = None):
        refuse_credentials(uri, "put them in a netrc file or the environment the proxy reads, not the URL")
        self.start = normalize_url(uri)
        if urlsplit(self.start).scheme not in ("http", "https") or not urlsplit(self.start).hostname:
            raise SourceError(f"{uri}: a website source is an http:// or https:// URL")
        self.uri = self.start
        self.origin = origin_of(self.start)
        path = urlsplit(self.start).path
        self.scope = path[: path.rfind("/") + 1] or "/"  # links outside the start page's folder are not followed
        self.limits = limits
        self.max_pages = max(1, max_pages)
        self.max_depth = max(0, max_depth)
        self.timeout_s = timeout_s
        try:
            self.previous: dict[str, dict] = json.loads(state) if state else {}
        except ValueError:
            self.previous = {}
        self.pages: dict[str, dict] = {}  # this crawl's state: validators, fingerprint, links, media type
        self.bodies: dict[str, tuple[bytes, str]] = {}
        self.requests = 0
        self.not_modified = 0
        self._client = None
        self._delay = 0.0

    # ------------------------------------------------------------------ HTTP

    def _http(self):
        if self._client is None:
            try:
                import httpx
            except ImportError:
                raise SourceError("crawling a website needs httpx: pip install 'slm[web]'") from None

            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=False,  # every hop is checked against the origin here
                headers={"User-Agent": USER_AGENT},
                trust_env=True,  # proxies and netrc credentials from the environment, never from the KB
            )
        return self._client

    def _same_origin(self, url: str) -> bool:
        return origin_of(url) == self.origin

    def _in_scope(self, url: str) -> bool:
        return self._same_origin(url) and urlsplit(url).path.startswith(self.scope)

    def _get(self, url: str, *, conditional: bool = True) -> _Page:
        import httpx

        hops: list[str] = []
        current = url
        while True:
            if current in hops:
                return _Page(url, 0, error=f"redirect loop: {' -> '.join(hops + [current])}")
            if len(hops) > MAX_REDIRECTS:
                return _Page(url, 0, error=f"more than {MAX_REDIRECTS} redirects")
            hops.append(current)
            headers = {}
            known = self.previous.get(current) if conditional else None
            if known:
                if known.get("etag"):
                    headers["If-None-Match"] = known["etag"]
                if known.get("last_modified"):
                    headers["If-Modified-Since"] = known["last_modified"]
            if self._delay and self.requests:
                time.sleep(self._delay)
            self.requests += 1
            try:
                with self._http().stream("GET", current, headers=headers) as response:
                    status = response.status_code
                    if status in (301, 302, 303, 307, 308):
                        target = response.headers.get("location")
                        if not target:
                            return _Page(url, status, error=f"HTTP {status} without a Location")
                        target = normalize_url(urljoin(current, target))
                        if not self._same_origin(target):
                            return _Page(url, status, error=f"redirect leaves the origin: {target}")
                        current = target
                        continue
                    if status == 304 and known:
                        return _Page(current, 304, etag=known.get("etag"), last_modified=known.get("last_modified"))
                    if status != 200:
                        return _Page(current, status, error=f"HTTP {status}")
                    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                        return _Page(current, status, error=_too_large(int(declared), self.limits))
                    body = bytearray()
                    for part in response.iter_bytes():
                        body += part
                        if len(body) > self.limits.max_bytes:  # a lying or missing Content-Length
                            return _Page(current, status, error=_too_large(len(body), self.limits))
                    return _Page(current, 200, bytes(body), media, response.headers.get("etag"),
                                 response.headers.get("last-modified"))
            except httpx.HTTPError as exc:
                return _Page(url, 0, error=f"{type(exc).__name__}: {exc}".splitlines()[0])

    def _robots(self) -> RobotFileParser:
        scheme, host, port = self.origin
        netloc = host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
        robots_url = f"{scheme}://{netloc}/robots.txt"
        parser = RobotFileParser(robots_url)
        page = self._get(robots_url, conditional=False)
        if page.status == 200 and page.body is not None:
            parser.parse(page.body.decode("utf-8", "replace").splitlines())
        elif 400 <= page.status < 500:
            parser.allow_all = True  # RFC 9309: no robots.txt (4xx) means no restrictions
        else:
            parser.disallow_all = True  # unreachable (5xx, network): assume the site wants no crawler
        delay = parser.crawl_delay(ROBOTS_AGENT)
        self._delay = min(float(delay), MAX_CRAWL_DELAY_S) if delay else 0.0
        return parser

    # ------------------------------------------------------------------ the crawl

    def discover(self) -> Discovery:
        robots = self._robots()
        if not robots.can_fetch(ROBOTS_AGENT, self.start):
            raise SourceError(f"{self.start}: robots.txt does not allow crawling it (or robots.txt is unreachable)")
        items: dict[str, SourceItem] = {}
        failed: list[FailedItem] = []
        queued = {self.start}
        queue: deque[tuple[str, int]] = deque([(self.start, 0)])
        fetched = 0
        while queue and fetched < self.max_pages:
            url, depth = queue.popleft()
            if not robots.can_fetch(ROBOTS_AGENT, url):
                continue
            fetched += 1
            page = self._get(url)
            if page.url != url and not robots.can_fetch(ROBOTS_AGENT, page.url):
                continue
            if page.error is not None:
                if url == self.start:
                    # The whole site would look deleted: stop instead, removing nothing.
                    raise SourceError(f"{self.start}: {page.error}")
                failed.append(FailedItem(url, page.error))
                continue
            if page.url in items:
                continue  # a redirect to a page already crawled
            if page.status == 304:
                self.not_modified += 1
                record = dict(self.previous[page.url])
            else:
                record = self._record(page)
            self.pages[page.url] = record
            if depth < self.max_depth:
                for link in record.get("links", ()):
                    if link not in queued and self._in_scope(link):
                        queued.add(link)
                        queue.append((link, depth + 1))
            suffix = MEDIA_SUFFIXES.get(record.get("media", ""))
            if suffix is None or record.get("noindex") or not selected(page.url, self.limits):
                continue  # not a document format (an image, a feed), or the page asks not to be indexed
            items[page.url] = SourceItem(page.url, f"page{suffix}", record["fingerprint"], location=page.url,
                                         size=record.get("size"))
        return Discovery(tuple(items.values()), tuple(failed))

    def _record(self, page: _Page) -> dict:
        body = page.body or b""
        record = {
            "etag": page.etag,
            "last_modified": page.last_modified,
            "fingerprint": hashlib.sha256(body).hexdigest(),
            "media": page.media,
            "size": len(body),
            "links": [],
        }
        if MEDIA_SUFFIXES.get(page.media) in _HTML:
            links, noindex = _links(body, page.url)
            record["links"], record["noindex"] = links, noindex
        self.bodies[page.url] = (body, page.media)
        return record

    def fetch(self, item: SourceItem) -> Fetched:
        if item.id not in self.bodies:
            # Unchanged here (a 304) but wanted anyway: the KB lost it, or settings changed what it turns into.
            page = self._get(item.id, conditional=False)
            if page.error is not None or page.body is None:
                raise DocumentError(page.error or f"HTTP {page.status}")
            self._record(page)
        body, _media = self.bodies[item.id]
        return Fetched(item, body)

    def state(self) -> str | None:
        return json.dumps(self.pages, sort_keys=True) if self.pages else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _too_large(size: int, limits: SourceLimits) -> str:
    return f"too large: over {limits.max_bytes / 1e6:.1f} MB (ingest.max_file_mb); {size / 1e6:.1f} MB read"


def _links(body: bytes, base: str) -> tuple[list[str], bool]:
    """Absolute http(s) links of a page, in order, without duplicates; and whether it says `noindex`.
    `nofollow` in its robots meta empties the links."""
    from lxml import etree

    from slm.kb.loaders.html import decode_html

    try:
        text, _ = decode_html(body)
        root = etree.fromstring(text.encode("utf-8"), etree.HTMLParser(no_network=True, encoding="utf-8"))
    except (DocumentError, etree.XMLSyntaxError, etree.ParserError, ValueError):
        return [], False
    if root is None:
        return [], False
    directives = " ".join(
        (m.get("content") or "").lower() for m in root.iterfind(".//meta") if (m.get("name") or "").lower() == "robots"
    )
    base_el = root.find(".//base")
    if base_el is not None and base_el.get("href"):
        base = urljoin(base, base_el.get("href"))
    out: list[str] = []
    seen: set[str] = set()
    if "nofollow" not in directives:
        for anchor in root.iter("a"):
            href = (anchor.get("href") or "").strip()
            if not href or href.startswith(("mailto:", "javascript:", "tel:", "#")):
                continue
            url = normalize_url(urljoin(base, href))
            if urlsplit(url).scheme in ("http", "https") and url not in seen:
                seen.add(url)
                out.append(url)
    return out, "noindex" in directives
