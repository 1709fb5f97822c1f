"""Request limits: body size (413) and read time (408), message counts and lengths (422), and the bounded
generation queue (503)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from slm.api.errors import ApiError, send_error
from slm.config import ServeSettings

QUEUE_FULL_RETRY_S = 2


class BodySizeLimit:
    """ASGI middleware: 413 when Content-Length or the bytes actually streamed exceed `max_bytes`, 408 when
    the whole body has not arrived within `timeout_s` (a slow client must not hold a connection open).

    The body is read (up to the limit) before the app runs and replayed to it; later `receive`
    calls go to the client, so a disconnect during a streamed response is still seen.
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 10.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self._reject(scope, send, declared)
        chunks, size = [], 0
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return await send_error(
                    send, 408, f"the request body did not arrive within {self.timeout_s:g} s (serve.body_timeout_s)",
                    code="body_timeout", scope=scope)
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                return await self._reject(scope, send, size)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope, send, size: int) -> None:
        await send_error(send, 413, f"request body too large: {size} bytes, the limit is {self.max_bytes} "
                         "(serve.max_body_bytes)", code="body_too_large", scope=scope)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def check_messages(texts: Sequence[str], serve: ServeSettings, field: str = "messages") -> None:
    """422 with a clear message when there are too many messages or one is too long."""
    if len(texts) > serve.max_messages:
        raise ApiError(422, f"{field}: at most {serve.max_messages} messages are allowed, got {len(texts)}",
                       code="too_many_messages", param=field)
    for i, text in enumerate(texts):
        if len(text) > serve.max_message_chars:
            raise ApiError(422, f"{field}[{i}]: a message may hold at most {serve.max_message_chars} characters, "
                           f"got {len(text)}", code="message_too_long", param=f"{field}[{i}]")


def check_max_tokens(value: int | None, serve: ServeSettings, field: str = "max_tokens") -> None:
    if value is not None and value > serve.max_tokens_limit:
        raise ApiError(422, f"{field}: at most {serve.max_tokens_limit} is allowed, got {value}",
                       code="max_tokens_too_large", param=field)


class GenerationQueue:
    """`workers` generation threads plus `queue_size` waiting places; when all are taken, 503 at once."""

    def __init__(self, workers: int, queue_size: int):
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue_size)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="slm-gen")
        self._lock = threading.Lock()
        self._taken = 0

    @property
    def depth(self) -> int:
        return self._taken

    def enter(self) -> "Slot":
        with self._lock:
            if self._taken >= self.capacity:
                raise ApiError(503, "the server is busy: all generation slots and queue places are taken; retry shortly",
                               code="queue_full", headers={"Retry-After": str(QUEUE_FULL_RETRY_S)})
            self._taken += 1
        return Slot(self)

    def _leave(self) -> None:
        with self._lock:
            self._taken -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Slot:
    """One place in the queue; released exactly once when the job ends (or never starts)."""

    def __init__(self, queue: GenerationQueue):
        self.queue = queue
        self.enqueued = time.perf_counter()
        self.started: float | None = None
        self._released = False
        self._lock = threading.Lock()

    @property
    def waited_s(self) -> float:
        return (self.started or time.perf_counter()) - self.enqueued

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.queue._leave()

    def submit(self, fn: Callable[[], Any]):
        """Run `fn` on a generation thread; the slot is released when it returns or raises."""

        def job():
            self.started = time.perf_counter()
            try:
                return fn()
            finally:
                self.release()

        try:
            return self.queue._executor.submit(job)
        except RuntimeError:  # executor shut down
            self.release()
            raise ApiError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "5"})

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.submit(fn))
