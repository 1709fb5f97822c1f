"""The SQLite store: chunks round-trip, the embedding cache, transactions and the ingestion log."""

import numpy as np
import pytest

from slm.kb.store import Store
from slm.types import Chunk, Document


def _chunk(i: int, doc: str = "a.md") -> Chunk:
    return Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text=f"text {i}", start=i * 10, end=i * 10 + 6,
                 section=("A", f"S{i}"), anchor=f"s{i}", page=None, title="A", source=doc, audiences=("hr",))


def _doc(doc: str) -> Document:
    return Document(id=doc, title="A", text="x" * 100, source=doc, content_hash="h", audiences=("hr",), language="en")


def _add_doc(store: Store, doc: str, n: int) -> None:
    with store.transaction() as conn:
        store.put_document(conn, _doc(doc), fingerprint="fp", chunk_count=n, ingested_at=0.0)
        store.put_chunks(conn, [(_chunk(i, doc), i, f"k{doc}{i}") for i in range(n)])


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
            store.put_document(conn, _doc("b.md"), fingerprint="fp", chunk_count=0, ingested_at=0.0)
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
        store.delete_documents(conn, ["a.md"])
    assert [c.doc_id for c in (s.chunk for s in store.iter_stored_chunks())] == ["b.md"]
    assert [d.id for d in store.documents()] == ["b.md"]


def test_document_rows_and_ingestion_writes(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    _add_doc(store, "a.md", 2)
    (info,) = store.documents()
    assert (info.id, info.fingerprint, info.audiences, info.chunk_count, info.chars, info.language) == (
        "a.md", "fp", ("hr",), 2, 100, "en")
    with store.transaction() as conn:
        store.rekey_chunks(conn, [("new-key", "a.md::0001")])
    assert [s.embed_key for s in store.iter_stored_chunks()] == ["ka.md0", "new-key"]
    with store.transaction() as conn:  # a changed document: its old chunks go, its row stays to be replaced
        store.delete_chunks_of(conn, ["a.md"])
    assert store.counts() == (1, 0)
    with store.transaction() as conn:
        store.put_document(conn, _doc("a.md"), fingerprint="fp2", chunk_count=1, ingested_at=1.0)
        store.put_chunks(conn, [(_chunk(0), 0, "k")])
    assert store.counts() == (1, 1) and store.fingerprints() == {"a.md": "fp2"}


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


def test_a_version_1_store_gains_languages_in_place(tmp_path):
    """A KB written before languages (schema 1, no language columns) opens, and its chunks get detected ones."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE documents (id TEXT PRIMARY KEY, title TEXT NOT NULL, source TEXT NOT NULL,
            content_hash TEXT NOT NULL, fingerprint TEXT NOT NULL, audiences TEXT NOT NULL, metadata TEXT NOT NULL,
            chunk_count INTEGER NOT NULL, chars INTEGER NOT NULL, ingested_at REAL NOT NULL);
        CREATE TABLE chunks (id TEXT PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
            section TEXT NOT NULL, anchor TEXT, page INTEGER, title TEXT NOT NULL, source TEXT NOT NULL,
            audiences TEXT NOT NULL, embed_key TEXT NOT NULL);
        INSERT INTO documents VALUES ('zh.html', 'Z', 'zh.html', 'h', 'fp', '[]', '{}', 1, 20, 0.0);
        INSERT INTO documents VALUES ('en.html', 'E', 'en.html', 'h', 'fp', '[]', '{}', 1, 20, 0.0);
        INSERT INTO chunks VALUES ('zh.html::0000', 'zh.html', 0, '本文档提供了关于 Debian 的常见问题。', 0, 20,
            '[]', NULL, NULL, 'Z', 'zh.html', '[]', 'k1');
        INSERT INTO chunks VALUES ('en.html::0000', 'en.html', 0, 'This is the text of the page.', 0, 20,
            '[]', NULL, NULL, 'E', 'en.html', '[]', 'k2');
        """
    )
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.get_meta("schema_version") == "2"
    assert {c.id: c.language for c in (s.chunk for s in store.iter_stored_chunks())} == {
        "en.html::0000": "en", "zh.html::0000": "zh"}
    assert {d.id: d.language for d in store.documents()} == {"en.html": "en", "zh.html": "zh"}
    assert store.languages() == {"en": 1, "zh": 1}
    store.close()
    assert Store(path).languages() == {"en": 1, "zh": 1}  # opening again changes nothing
