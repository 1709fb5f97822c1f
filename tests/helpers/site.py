"""A small website on a real loopback HTTP server, for crawl tests and the crawl benchmark: pages with ETag
or Last-Modified validators (answering 304), a robots.txt, redirects, and a log of every request."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Resource:
    body: bytes = b""
    status: int = 200
    media: str = "text/html; charset=utf-8"
    location: str | None = None  # a redirect target
    validator: str = "etag"  # etag | last-modified | none
    modified: float = 1_700_000_000.0


@dataclass
class Site:
    """Change `resources` between crawls; `requests` logs (method, path, status) in order."""

    resources: dict[str, Resource] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, path: str, title: str, text: str, links: tuple[str, ...] = (), validator: str = "etag") -> None:
        anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        html = (f"<html><head><title>{title}</title></head><body><nav><ul>{anchors}</ul></nav>"
                f"<main><h1>{title}</h1><p>{text}</p></main></body></html>")
        self.resources[path] = Resource(html.encode("utf-8"), validator=validator)

    def paths(self, status: int | None = None) -> list[str]:
        with self.lock:
            return [p for _, p, s in self.requests if status is None or s == status]


def _handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            resource = site.resources.get(self.path)
            status = 404 if resource is None else resource.status
            headers: dict[str, str] = {}
            body = b"not found" if resource is None else resource.body
            if resource is not None and resource.location:
                headers["Location"] = resource.location
                body = b""
            elif resource is not None and status == 200:
                if resource.validator == "etag":
                    etag = '"' + hashlib.sha256(resource.body).hexdigest()[:16] + '"'
                    headers["ETag"] = etag
                    if self.headers.get("If-None-Match") == etag:
                        status, body = 304, b""
                elif resource.validator == "last-modified":
                    stamp = formatdate(resource.modified, usegmt=True)
                    headers["Last-Modified"] = stamp
                    if self.headers.get("If-Modified-Since") == stamp:
                        status, body = 304, b""
                headers["Content-Type"] = resource.media
            with site.lock:
                site.requests.append(("GET", self.path, status))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

    return Handler


class SiteServer:
    """`with SiteServer(site) as base:` serves `site` on 127.0.0.1 at a free port; `base` is its URL."""

    def __init__(self, site: Site):
        self.site = site
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
