"""Embedding as chunks arrive: whole windows, each cached at once; cached and repeated keys skipped."""

import numpy as np

from slm.kb.embed_stream import WINDOW_BATCHES, EmbedStream


class FakeStore:
    def __init__(self, cached=()):
        self.vectors = {k: np.zeros(2, np.float32) for k in cached}
        self.puts: list[list[str]] = []
        self.lookups = 0

    def cached_embeddings(self, keys):
        self.lookups += 1
        return {k: self.vectors[k] for k in keys if k in self.vectors}

    def put_embeddings(self, items):
        items = list(items)
        self.puts.append([k for k, _ in items])
        self.vectors.update(items)


class FakeEmbedder:
    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size, on_batch=None):
        self.calls.append(list(texts))
        return np.ones((len(texts), 2), np.float32)


def _stream(store, embedder, batch=2, **kw):
    return EmbedStream(store, lambda: embedder, batch, **kw)


def _add(stream, n, start=0):
    keys = [f"k{i}" for i in range(start, start + n)]
    stream.add(keys, [f"text {i}" for i in range(start, start + n)])


def test_encodes_whole_windows_then_the_rest_and_caches_each():
    store, embedder = FakeStore(), FakeEmbedder()
    stream = _stream(store, embedder, use_cache=True)
    window = 2 * WINDOW_BATCHES
    _add(stream, window - 1)
    assert not stream.step() and not embedder.calls  # less than a window: wait for more
    _add(stream, 3, start=window - 1)
    assert stream.step()
    assert [len(c) for c in embedder.calls] == [window] and store.puts == [[f"k{i}" for i in range(window)]]
    assert stream.finish() == window + 2
    assert [len(p) for p in store.puts] == [window, 2]  # a checkpoint per encode


def test_idle_encodes_whole_batches_only():
    store, embedder = FakeStore(), FakeEmbedder()
    stream = _stream(store, embedder, batch=4, use_cache=True)
    _add(stream, 7)
    assert stream.step(idle=True) and [len(c) for c in embedder.calls] == [4]
    assert not stream.step(idle=True)  # 3 left: less than a batch
    assert stream.finish() == 7


def test_cached_and_repeated_keys_are_not_encoded():
    store, embedder = FakeStore(cached=["k1", "k3"]), FakeEmbedder()
    stream = _stream(store, embedder, use_cache=True)
    _add(stream, 5)
    _add(stream, 5)  # the same keys again (a chunk text repeated across documents)
    assert stream.finish() == 3
    assert sorted(t for c in embedder.calls for t in c) == ["text 0", "text 2", "text 4"]


def test_without_cache_everything_is_encoded_once():
    store, embedder = FakeStore(cached=["k1"]), FakeEmbedder()
    stream = _stream(store, embedder, use_cache=False)
    _add(stream, 3)
    _add(stream, 3)
    assert stream.finish() == 3 and store.lookups == 0


def test_restart_forgets_waiting_and_seen_keys_but_keeps_counts():
    store, embedder = FakeStore(), FakeEmbedder()
    stream = _stream(store, embedder, use_cache=True)
    _add(stream, 3)
    assert stream.finish() == 3
    _add(stream, 2, start=10)
    stream.restart()
    assert stream.waiting == 0
    _add(stream, 3)  # seen before the restart, so looked up again: the store has them now
    assert stream.finish() == 3 and store.lookups == 2  # k10, k11 dropped unlooked-up
    _add(stream, 1, start=20)
    assert stream.finish() == 4


def test_embedder_is_asked_for_only_when_a_text_needs_it():
    asked = []
    store = FakeStore(cached=["k0"])
    stream = EmbedStream(store, lambda: asked.append(1) or FakeEmbedder(), 2, use_cache=True,
                         on_first=lambda: asked.append("first"))
    _add(stream, 1)
    assert stream.finish() == 0 and asked == [] and not stream.started  # all cached: the model never loads
    _add(stream, 1, start=1)
    assert stream.finish() == 1 and asked == ["first", 1] and stream.started
    _add(stream, 1, start=2)
    assert stream.finish() == 2 and asked == ["first", 1, 1]  # on_first once
