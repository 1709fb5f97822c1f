"""The SQLite store: chunks round-trip, the embedding cache, transactions and the ingestion log."""

import numpy as np
import pytest

from slm.store import INSERT_CHUNK, INSERT_DOCUMENT, Store, chunk_row
from slm.types import Chunk


def _chunk(i: int, doc: str = "a.md") -> Chunk:
    return Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text=f"text {i}", start=i * 10, end=i * 10 + 6,
                 section=("A", f"S{i}"), anchor=f"s{i}", page=None, title="A", source=doc, audiences=("hr",))


def _add_doc(store: Store, doc: str, n: int) -> None:
    with store.transaction() as conn:
        conn.execute(INSERT_DOCUMENT, (doc, "A", doc, "h", "fp", '["hr"]', "{}", n, 100, 0.0))
        conn.executemany(INSERT_CHUNK, [chunk_row(_chunk(i, doc), i, f"k{doc}{i}") for i in range(n)])


def test_chunks_round_trip_in_requested_order(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    _add_doc(store, "a.md", 3)
    got = store.get_chunks(["a.md::0002", "missing", "a.md::0000"])
    assert [c.id for c in got] == ["a.md::0002", "a.md::0000"]
    assert got[0] == _chunk(2)
    assert [s.embed_key for s in store.iter_stored_chunks()] == ["ka.md0", "ka.md1", "ka.md2"]
    assert store.counts() == (1, 3)


def test_failed_transaction_leaves_nothing(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute(INSERT_DOCUMENT, ("b.md", "B", "b.md", "h", "fp", "[]", "{}", 0, 0, 0.0))
            raise RuntimeError("boom")
    assert store.counts() == (0, 0)


def test_embedding_cache_and_pruning(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    vec = np.arange(4, dtype=np.float32)
    store.put_embeddings([("ka.md0", vec), ("orphan", vec * 2)])
    got = store.cached_embeddings(["ka.md0", "orphan", "nope"])
    assert set(got) == {"ka.md0", "orphan"}
    np.testing.assert_array_equal(got["orphan"], vec * 2)
    _add_doc(store, "a.md", 1)
    with store.transaction() as conn:
        assert store.prune_embeddings(conn) == 1
    assert set(store.cached_embeddings(["ka.md0", "orphan"])) == {"ka.md0"}


def test_deleting_a_document_cascades_to_its_chunks(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    _add_doc(store, "a.md", 2)
    _add_doc(store, "b.md", 1)
    with store.transaction() as conn:
        conn.execute("DELETE FROM documents WHERE id = 'a.md'")
    assert [c.doc_id for c in (s.chunk for s in store.iter_stored_chunks())] == ["b.md"]


def test_log_and_meta(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with store.transaction() as conn:
        store.log(conn, "r1", "a.md", "failed", "empty file")
        store.set_meta("root", "/x", conn)
    entries = store.log_entries("r1")
    assert [(e.path, e.status, e.reason) for e in entries] == [("a.md", "failed", "empty file")]
    assert store.get_meta("root") == "/x"
    reopened = Store(tmp_path / "s.sqlite")  # schema creation is idempotent
    assert reopened.get_meta("root") == "/x"


def test_threads_share_the_store(tmp_path):
    import threading

    store = Store(tmp_path / "s.sqlite")
    _add_doc(store, "a.md", 5)
    results, errors = [], []

    def read():
        try:
            for _ in range(50):
                results.append(len(store.get_chunks([f"a.md::{i:04d}" for i in range(5)])))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [5] * 200
    store.close()
