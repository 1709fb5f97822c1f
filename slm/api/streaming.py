"""Generation on a worker thread, bridged to the event loop; server-sent events in OpenAI's chunk format.

A client that leaves mid-stream cancels generation: the bridge sets a `threading.Event` that the
answerer receives as `cancel=` (when its `stream` accepts it) and stops pulling deltas.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from slm.api.limits import Slot

DONE = b"data: [DONE]\n\n"
_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def call_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn` with the keyword arguments its signature accepts (optional hooks like `cancel=`)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


class GenerationStream:
    """Runs `make_iter(cancel)` on a generation thread; iterate it asynchronously for its items."""

    def __init__(self, slot: Slot, make_iter: Callable[[threading.Event], Iterator[Any]]):
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._make_iter = make_iter
        self.future = slot.submit(self._run)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down)
            self.cancel.set()

    def _run(self) -> None:
        if self.cancel.is_set():  # the client left while the request waited in the queue
            self._put(_END)
            return
        iterator = None
        try:
            iterator = self._make_iter(self.cancel)
            for item in iterator:
                if self.cancel.is_set():
                    break
                self._put(item)
        except BaseException as exc:  # handed to the event loop, which reports it to the client
            self._put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
            self._put(_END)

    async def items(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8")


def chunk(completion_id: str, created: int, model: str, delta: dict, finish_reason: str | None = None,
          **extra: Any) -> dict:
    """One `chat.completion.chunk` object, as OpenAI streams them."""
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    body.update(extra)
    return body
