"""Embedding as chunks arrive: texts whose vectors the store does not cache yet are encoded a window of batches at
a time, longest first, and each window's vectors are cached in the store at once (a killed run keeps them)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from slm.kb.embedding import Embedder
    from slm.kb.store import Store

WINDOW_BATCHES = 8  # cache vectors in SQLite every this many batches (what a kill can lose at most)


class EmbedStream:
    """Feed it (key, text) pairs with `add`, let it encode with `step` between arrivals, `finish` at the end.
    A key is encoded at most once per stream; with `use_cache`, keys the store already holds are skipped.
    `embedder` is a callable so the model loads only when the first text needs it (overlapping the loading)."""

    def __init__(self, store: "Store", embedder: Callable[[], "Embedder"], batch_size: int, *, use_cache: bool,
                 on_batch: Callable[[int], None] | None = None, on_first: Callable[[], None] | None = None):
        self._store = store
        self._embedder = embedder
        self.batch_size = batch_size
        self.window = batch_size * WINDOW_BATCHES
        self._use_cache = use_cache
        self._on_batch = on_batch or (lambda n: None)
        self._on_first = on_first
        self._unchecked: dict[str, str] = {}  # added, not yet looked up in the cache
        self._todo: dict[str, str] = {}  # to encode, in arrival order
        self._seen: set[str] = set()
        self.started = False  # encoded anything yet (on_first has run)
        self.embedded = 0  # texts encoded
        self.seconds = 0.0  # spent encoding and caching

    @property
    def waiting(self) -> int:
        return len(self._unchecked) + len(self._todo)

    def add(self, keys: Sequence[str], texts: Sequence[str]) -> None:
        for key, text in zip(keys, texts):
            if key not in self._seen:
                self._seen.add(key)
                self._unchecked[key] = text

    def step(self, *, idle: bool = False) -> bool:
        """Encode one window if a whole one waits; with `idle` (the producer is behind and the encoder would wait),
        whatever whole batches wait. True if it encoded anything."""
        if self.waiting >= self.window or (idle and self.waiting >= self.batch_size):
            self._check()
        if len(self._todo) >= self.window:
            return self._encode(self.window)
        if idle and len(self._todo) >= self.batch_size:
            return self._encode(min(self.window, len(self._todo) // self.batch_size * self.batch_size))
        return False

    def finish(self) -> int:
        """Encode everything still waiting; the number of texts this stream encoded."""
        self._check()
        while self._todo:
            self._encode(self.window)
        return self.embedded

    def restart(self, *, use_cache: bool = True) -> None:
        """Drop what waits and what was seen: the embedder changed, so every key is new (counters carry on)."""
        self._unchecked, self._todo, self._seen = {}, {}, set()
        self._use_cache = use_cache

    def _check(self) -> None:
        if not self._unchecked:
            return
        cached = self._store.cached_embeddings(list(self._unchecked)) if self._use_cache else {}
        for key, text in self._unchecked.items():
            if key not in cached:
                self._todo[key] = text
        self._unchecked = {}

    def _encode(self, n: int) -> bool:
        if not self.started:
            self.started = True
            if self._on_first is not None:
                self._on_first()
        keys = list(self._todo)[:n]
        texts = [self._todo.pop(k) for k in keys]
        t = time.perf_counter()
        vectors = self._embedder().encode(texts, batch_size=self.batch_size, on_batch=self._on_batch)  # longest first
        self._store.put_embeddings(zip(keys, vectors))
        self.seconds += time.perf_counter() - t
        self.embedded += len(keys)
        return True
