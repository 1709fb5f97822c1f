"""A bounded background producer: one thread runs `work` over the items in order, at most `ahead` results ahead
of the consumer, so reading and parsing documents overlap with encoding instead of preceding it."""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_READY = _Marker("NOT_READY")  # poll(wait=False) found no result waiting
DONE = _Marker("DONE")  # every item's result has been handed out


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher(Generic[T, R]):
    """Results of `work(item)` in the items' order. `ahead` 0 runs `work` in the caller's thread at each poll (no
    thread at all). An exception `work` raises is raised by the poll that would have returned its result.
    `busy_s`: seconds spent inside `work`. Use as a context manager: leaving it stops and joins the thread."""

    def __init__(self, items: Iterable[T], work: Callable[[T], R], ahead: int):
        self._items: Iterator[T] = iter(items)
        self._work = work
        self._ahead = max(0, int(ahead))
        self._stop = threading.Event()
        self._finished = False
        self.busy_s = 0.0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if self._ahead:
            self._queue = queue.Queue(maxsize=self._ahead)
            self._thread = threading.Thread(target=self._run, name="slm-prefetch", daemon=True)
            self._thread.start()

    def __enter__(self) -> "Prefetcher[T, R]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _timed(self, item: T) -> R:
        t = time.perf_counter()
        try:
            return self._work(item)
        finally:
            self.busy_s += time.perf_counter() - t

    def _run(self) -> None:
        assert self._queue is not None
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                self._put(self._timed(item))
            self._put(DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            self._put(_Failure(exc))

    def _put(self, value) -> None:
        # A bounded wait, so a consumer that stopped listening (close) never leaves this thread blocked.
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def poll(self, *, wait: bool = True):
        """The next result, DONE after the last one, or NOT_READY when `wait` is False and none is waiting yet."""
        if self._finished:
            return DONE
        if self._queue is None:
            value = next(self._items, DONE)
            value = value if value is DONE else self._timed(value)
        else:
            try:
                value = self._queue.get(block=wait)
            except queue.Empty:
                return NOT_READY
        if isinstance(value, _Failure):
            self._finished = True
            raise value.exc
        if value is DONE:
            self._finished = True
        return value

    def __iter__(self) -> Iterator[R]:
        while (value := self.poll()) is not DONE:
            yield value

    def close(self) -> None:
        """Stop the thread after the item it is on and wait for it (the caller may then close what `work` reads)."""
        self._stop.set()
        self._finished = True
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # make room, so a put in progress returns
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
