"""Segmented indexes: BM25 postings with whole-index statistics, tombstones, incremental generations, merges,
garbage collection of segments, HNSW against exact search, and generations of the first format."""

import json

import numpy as np
import pytest

from slm.kb.index import update
from slm.kb.index.dense import DenseIndex, choose_kind
from slm.kb.index.generation import (
    ROWS_FILE,
    build_generation,
    collect_garbage,
    generation_dir,
    load_generation,
)
from slm.kb.index.manifest import Manifest
from slm.kb.index.postings import Postings, SegmentedBM25
from slm.kb.index.sparse import SparseIndex
from slm.kb.index.update import NewRows, next_generation

TEXTS = [
    "how to sort a list in python", "dictionaries map keys to values", "use os.path.join for paths",
    "lists of lists and sorting keys", "the warehouse ships parcels daily", "parcels and boxes in the warehouse",
    "sorting parcels by weight", "python dictionaries are hash tables", "paths on windows use backslashes",
    "annual leave needs approval",
]
NAMES = ["zero", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
QUERIES = ["sorting lists", "warehouse parcels", "python dictionaries keys", "paths join", "leave"]


def _unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(ids, texts, vectors, docs=None):
    return NewRows(chunk_ids=list(ids), doc_ids=list(docs or ids), audiences=[("employees",)] * len(ids),
                   vectors=vectors, index_texts=list(texts))


def _results(index, query_vector, text):
    dense = dict(zip((index.chunk_ids[p] for p in index.search_dense(query_vector, 50, None)[0]),
                     index.search_dense(query_vector, 50, None)[1].round(5)))
    pos, scores = index.search_sparse(text, 50, None)
    sparse = {index.chunk_ids[p]: round(float(s), 4) for p, s in zip(pos, scores)}
    return dense, sparse


def test_postings_rank_and_score_as_bm25s_did():
    ours, theirs = SegmentedBM25([Postings.build(TEXTS)]), SparseIndex.build(TEXTS)
    for query in QUERIES:
        p1, s1 = ours.search(query, 10)
        p2, s2 = theirs.search(query, 10)
        assert dict(zip(p1.tolist(), s1.round(4).tolist())) == pytest.approx(dict(zip(p2.tolist(), s2.round(4).tolist())), abs=1e-3)


def test_segments_with_tombstones_score_like_one_rebuilt_segment():
    alive = np.ones(len(TEXTS), dtype=bool)
    alive[[1, 4]] = False
    split = SegmentedBM25([Postings.build(TEXTS[:6]), Postings.build(TEXTS[6:])], alive)
    live = [t for t, a in zip(TEXTS, alive) if a]
    whole = SegmentedBM25([Postings.build(live)])
    positions = np.flatnonzero(alive)
    for query in QUERIES:
        p1, s1 = split.search(query, 10, alive)
        p2, s2 = whole.search(query, 10)
        assert positions[p2].tolist() == p1.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-5)


def test_incremental_generation_equals_a_full_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(update, "COMPACT_DELETED_SHARE", 0.5)  # 4 of 10 rows deleted: tombstones, no compaction
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(len(TEXTS), 8)))
    ids = [f"c{i}" for i in range(len(TEXTS))]
    docs = [f"doc{i // 2}" for i in range(len(TEXTS))]  # two chunks per document
    first = next_generation(tmp_path, 1, None, gone_docs=set(), new=_rows(ids, TEXTS, vectors, docs),
                            texts_for=lambda _: pytest.fail("nothing to merge"), embedder="m", dimension=8)
    current = load_generation(first.folder)
    # doc1 changes (its two chunks replaced by one new one), doc3 is deleted.
    new_vec = _unit(rng.normal(size=(1, 8)))
    report = next_generation(tmp_path, 2, current, gone_docs={"doc1", "doc3"},
                             new=_rows(["n1"], ["fresh parcels sorting text"], new_vec, ["doc1"]),
                             texts_for=lambda _: pytest.fail("nothing to merge"), embedder="m", dimension=8)
    assert (report.segments, report.added_rows, report.deleted_rows, report.merged_segments) == (2, 1, 4, 0)
    updated = load_generation(report.folder)
    assert updated.size == 11 and updated.live == 7 and updated.manifest.chunks == 7
    assert [updated.chunk_ids[p] for p in updated.live_positions()] == ["c0", "c1", "c4", "c5", "c8", "c9", "n1"]

    keep = [i for i, d in enumerate(docs) if d not in {"doc1", "doc3"}]
    full = load_generation(build_generation(tmp_path / "full", 1, chunk_ids=[ids[i] for i in keep] + ["n1"],
                                            audiences=[("employees",)] * 7,
                                            vectors=np.concatenate([vectors[keep], new_vec]),
                                            index_texts=[TEXTS[i] for i in keep] + ["fresh parcels sorting text"],
                                            embedder="m"))
    for query in QUERIES:
        qv = _unit(rng.normal(size=(1, 8)))[0]
        assert _results(updated, qv, query) == _results(full, qv, query)
    # Deleted rows are never found, even when the caller asks for everything.
    assert not {"c2", "c3", "c6", "c7"} & set(_results(updated, vectors[2], "dictionaries keys values")[0])

    # Past the compaction share, the heavily deleted segment is rewritten without its dead rows.
    monkeypatch.setattr(update, "COMPACT_DELETED_SHARE", 0.3)
    texts = dict(zip(ids, TEXTS))
    again = next_generation(tmp_path, 3, updated, gone_docs={"doc0"}, new=_rows([], [], np.zeros((0, 8), np.float32)),
                            texts_for=lambda wanted: [texts.get(i, "fresh parcels sorting text") for i in wanted],
                            embedder="m", dimension=8)
    compacted = load_generation(again.folder)
    assert again.merged_segments == 1 and len(compacted.segments) == 2 and compacted.alive is None
    assert sorted(compacted.chunk_ids) == ["c4", "c5", "c8", "c9", "n1"]


def test_many_small_updates_are_merged_and_unused_segments_collected(tmp_path, monkeypatch):
    monkeypatch.setattr(update, "MAX_SEGMENTS", 3)
    rng = np.random.default_rng(1)
    current, numbers = None, []
    texts: dict[str, str] = {}
    for n in range(1, 8):
        cid = f"c{n}"
        texts[cid] = f"update {NAMES[n]} about parcels"
        report = next_generation(tmp_path, n, current, gone_docs=set(),
                                 new=_rows([cid], [texts[cid]], _unit(rng.normal(size=(1, 4)))),
                                 texts_for=lambda ids: [texts[i] for i in ids], embedder="m", dimension=4)
        current = load_generation(report.folder)
        numbers.append(n)
        assert len(current.segments) <= 3
        collect_garbage(tmp_path, keep=numbers[-2:])
    assert sorted(current.chunk_ids) == sorted(texts)
    pos, _ = current.search_sparse("update bravo", 10, None)
    assert current.chunk_ids[pos[0]] == "c2"
    used = set(current.manifest.segments) | set(Manifest.read(generation_dir(tmp_path, 6) / "manifest.json").segments)
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("seg-")} == used


def test_hnsw_recall_against_exact_and_masks():
    rng = np.random.default_rng(2)
    vectors = _unit(rng.normal(size=(3000, 16)))
    flat, hnsw = DenseIndex.build(vectors, "flat"), DenseIndex.build(vectors, "hnsw")
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    queries = _unit(rng.normal(size=(50, 16)))
    recall = np.mean([len(set(flat.search(q, 10)[0]) & set(hnsw.search(q, 10)[0])) / 10 for q in queries])
    assert recall >= 0.9
    allowed = np.zeros(3000, dtype=bool)
    allowed[::7] = True
    pos, _ = hnsw.search(queries[0], 10, allowed)
    assert len(pos) == 10 and allowed[pos].all()
    assert choose_kind("auto", 10, 100) == "flat" and choose_kind("auto", 100, 100) == "hnsw"


def test_generation_of_the_first_format_still_loads(tmp_path):
    folder = generation_dir(tmp_path, 1)
    folder.mkdir()
    vectors = _unit(np.eye(3) + 0.1)
    DenseIndex.build(vectors).save(folder)
    SparseIndex.build(["alpha", "beta", "gamma"]).save(folder)
    (folder / ROWS_FILE).write_text(json.dumps({"chunk_ids": ["a", "b", "c"], "row_groups": [0, 0, 0], "groups": [[]]}))
    (folder / "manifest.json").write_text(json.dumps({"embedder": "m", "dimension": 3, "generation": 1, "chunks": 3,
                                                      "created": "then", "format": 1}))
    loaded = load_generation(folder)
    assert loaded.segments == [] and loaded.size == 3
    assert loaded.chunk_ids[loaded.search_sparse("beta", 3, None)[0][0]] == "b"
    # The next update of such a generation is a full build (it has no segments to keep).
    report = next_generation(tmp_path, 2, None, gone_docs=set(), new=_rows(["a"], ["alpha"], vectors[:1]),
                             texts_for=lambda _: [], embedder="m", dimension=3)
    assert load_generation(report.folder).segments


def test_postings_analyse_each_row_by_its_language_as_bm25s_did():
    texts = ["How do I sort a list of dictionaries by a value?", "如何安装软件包？使用 apt-get install 命令。",
             "Debian 的发行版本有稳定版、测试版和不稳定版。", "Bagaimana cara memasang paket perangkat lunak?"]
    languages = ["en", "zh", "zh", "id"]
    ours, theirs = SegmentedBM25([Postings.build(texts, languages)]), SparseIndex.build(texts, languages)
    assert ours.languages == theirs.languages == {"en": 1, "zh": 2, "id": 1}
    for query in ["稳定版", "memasang paket", "sort dictionaries", "install 软件包"]:
        p1, s1 = ours.search(query, 4)
        p2, s2 = theirs.search(query, 4)
        assert p1.tolist() == p2.tolist() and np.allclose(s1, s2, rtol=1e-4), query
