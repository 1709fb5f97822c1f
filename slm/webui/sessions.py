"""Gradio keys its queue, event streams and state by a `session_hash` the client picks; these ASGI guards
give every browser a secret server-set cookie and bind each session id to the first owner using it."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import parse_qs

from starlette.requests import cookie_parser

from slm.webui.conversations import Owner

BROWSER_COOKIE = "slm-browser"
MAX_BOUND_SESSIONS = 20_000  # page loads remembered (~5 MB); the least recent binding is forgotten first
MAX_SESSIONS_PER_USER = 50  # open tabs of one user; beyond it their own oldest binding goes
# deep_link returns every input and output Gradio cached for a session id (a whole transcript);
# component_server reads a session's components from a multipart body this guard does not parse.
UNUSED_SESSION_ROUTES = ("/gradio_api/deep_link", "/gradio_api/component_server")
REFUSED = b"this chat session was started by another login or browser: reload the page"
_SESSION_IN_PATH = re.compile(r"/(?:heartbeat|stream)/([^/?]+)")


def browser_of(cookies: Any) -> str:
    """The browser id of a request's cookies ("" when it has none: a client that keeps no cookies)."""
    return (cookies.get(BROWSER_COOKIE) if cookies is not None else None) or ""


def _cookie_header(scope: dict) -> str:
    return "; ".join(v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie")


class BrowserCookie:
    """Give each browser a random HttpOnly id when it loads a page, so the no-login mode, where everyone
    is the same `local` user, still keeps browsers apart. Only page loads set it: every later request of
    that page (assets, heartbeat, queue) then carries the same id. A client that keeps no cookies has
    none ("" for all such clients)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or not _wants_html(scope):
            return await self.app(scope, receive, send)
        if cookie_parser(_cookie_header(scope)).get(BROWSER_COOKIE):  # the parser request.cookies uses
            return await self.app(scope, receive, send)
        browser = secrets.token_urlsafe(24)
        cookie = _cookie_header(scope)
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"cookie"]
        cookie = (f"{cookie}; " if cookie else "") + f"{BROWSER_COOKIE}={browser}"
        headers.append((b"cookie", cookie.encode("latin-1")))
        scope = dict(scope, headers=headers)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        set_cookie = f"{BROWSER_COOKIE}={browser}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + [(b"set-cookie", set_cookie)])
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _wants_html(scope: dict) -> bool:
    return b"text/html" in dict(scope.get("headers", [])).get(b"accept", b"")


class SessionBinding:
    """Refuse (403) a request naming a Gradio session id that another owner already uses.

    The id is found where Gradio reads it: the `session_hash` query parameter (queue/data), the path
    (heartbeat, stream) or the JSON body (queue/join, cancel, run). `owner_of(scope)` says who is asking
    (None: not logged in, which Gradio refuses itself; such a request never binds an id). Gradio's routes
    that hand out a session's cached inputs and outputs, which this chat does not use, are refused too."""

    def __init__(self, app: Any, owner_of: Callable[[dict], Owner | None], max_sessions: int | None = None):
        self.app, self.owner_of = app, owner_of
        self.max_sessions = MAX_BOUND_SESSIONS if max_sessions is None else max_sessions
        self._owners: OrderedDict[str, Owner] = OrderedDict()
        self._by_user: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()

    def _allowed(self, session: str, owner: Owner | None) -> bool:
        with self._lock:
            bound = self._owners.get(session)
            if bound is not None:
                self._owners.move_to_end(session)
                return bound == owner
            if owner is not None:
                self._bind(session, owner)
            return True

    def _bind(self, session: str, owner: Owner) -> None:
        """Remember session -> owner, forgetting the user's own oldest beyond their cap first, so one user
        (whatever browser ids they send) cannot push everyone else's bindings out."""
        mine = self._by_user.setdefault(owner.user, OrderedDict())
        while len(mine) >= MAX_SESSIONS_PER_USER:
            self._forget(next(iter(mine)))
        self._owners[session] = owner
        mine[session] = None
        while len(self._owners) > self.max_sessions:
            self._forget(next(iter(self._owners)))

    def _forget(self, session: str) -> None:
        owner = self._owners.pop(session)
        mine = self._by_user[owner.user]
        mine.pop(session, None)
        if not mine:
            del self._by_user[owner.user]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.rstrip("/").endswith(UNUSED_SESSION_ROUTES):
            return await _refuse(send, 404, b"not found")
        sessions = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [])
        sessions += _SESSION_IN_PATH.findall(path)
        if scope.get("method") == "POST" and _read_as_json(scope):
            body, receive = await _buffer(receive)
            sessions += _session_in_body(body)
        if sessions:
            owner = self.owner_of(scope)
            if not all(self._allowed(s, owner) for s in sessions):
                return await _refuse(send, 403, REFUSED)
        await self.app(scope, receive, send)


async def _refuse(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _read_as_json(scope: dict) -> bool:
    """Whether FastAPI would parse this body as JSON: no content type, application/json or */*+json."""
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
    return not content_type or content_type == b"application/json" or (
        content_type.startswith(b"application/") and content_type.endswith(b"+json")
    )


async def _buffer(receive) -> tuple[bytes, Callable]:
    """Read the whole request body, and a `receive` that hands it on unchanged."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: pass that on
            async def gone():
                return message
            return b"", gone
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _session_in_body(body: bytes) -> list[str]:
    if not body:
        return []
    try:
        data = json.loads(body)  # the parser Starlette's request.json() uses, so both read the same id
    except (ValueError, UnicodeDecodeError):
        return []
    value = data.get("session_hash") if isinstance(data, dict) else None
    return [value] if isinstance(value, str) and value else []
