"""Fusion: weighted RRF, per-KB calibration of the weights (never below the better retriever on what it is
tuned on), storage beside the KB, use by the retriever, and tuned questions kept out of reports."""

import json

import numpy as np
import pytest

from slm.errors import ConfigError, KnowledgeBaseError
from slm.evaluation.runner import exclude_tuned
from slm.retrieval.fusion import (
    FUSION_FILE,
    GoldQuestion,
    calibrate_fusion,
    fusion_weights,
    load_fusion,
    questions_with_gold,
    weighted_rrf,
)
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retrieval.hybrid import HybridRetriever
from slm.types import QAExample
from tests.helpers.kb import kb_settings, write_corpus, write_doc

WORDS = ["harbour", "glacier", "violin", "saffron", "tundra", "copper", "lantern", "orchid", "quartz", "falcon",
         "meadow", "canyon", "walnut", "ember", "pebble", "thistle", "marble", "cobalt", "juniper", "basalt"]


def test_weighted_rrf():
    fused = weighted_rrf([np.array([1, 2]), np.array([2, 3])], [2.0, 0.5], rrf_k=60)
    assert fused[1] == pytest.approx(2 / 61)
    assert fused[2] == pytest.approx(2 / 62 + 0.5 / 61)
    assert fused[3] == pytest.approx(0.5 / 62)
    assert set(weighted_rrf([np.array([1]), np.array([3])], [1.0, 0.0], 60)) == {1}  # weight 0: list ignored


@pytest.fixture(scope="module")
def kb(tmp_path_factory, tiny_embedder_dir):
    root = tmp_path_factory.mktemp("fusion")
    corpus = write_corpus(root / "docs")
    for i, word in enumerate(WORDS):  # one distinct heading per document: a question made from it finds it
        write_doc(corpus, f"topics/{word}.md", f"Topic {i}",
                  {f"{word.title()} procedures": f"The {word} procedure covers {word} forms, {word} approvals and "
                                                 f"the {word} archive kept by the records office."})
    settings = kb_settings(root / "kb", tiny_embedder_dir)
    base = KnowledgeBase.open(settings.kb, settings, create=True)
    ingest(corpus, base, progress=False)
    yield base
    base.close()


class _RandomDense:
    """The KB's index with the dense ranking replaced by noise: calibration must turn dense off."""

    def __init__(self, index):
        self._index = index
        self._rng = np.random.default_rng(0)

    def __getattr__(self, name):
        return getattr(self._index, name)

    def search_dense(self, query, k, audiences):
        positions = self._rng.permutation(self._index.size)[:k]
        return positions, np.zeros(len(positions), dtype=np.float32)


class _KbWithNoisyDense:
    def __init__(self, kb):
        self._kb = kb

    def __getattr__(self, name):
        return getattr(self._kb, name)

    def index(self):
        return _RandomDense(self._kb.index())


def test_calibration_never_below_the_better_retriever_on_its_tuning_questions(kb):
    # Keyword questions made from the chunks: BM25 finds them, a noisy dense ranking does not.
    questions = questions_with_gold(kb.all_chunks(), 40, seed=1)
    assert len(questions) >= 10 and all(isinstance(q, GoldQuestion) and q.start is not None for q in questions)
    result = calibrate_fusion(_KbWithNoisyDense(kb), questions, rrf_k=60, candidates=20, embedder="m")
    tuned = result.tuned
    assert tuned["calibrated"].mrr_at_10 >= max(tuned["dense"].mrr_at_10, tuned["bm25"].mrr_at_10)
    assert tuned["bm25"].mrr_at_10 > tuned["dense"].mrr_at_10
    assert result.bm25_weight == 1.0 and result.dense_weight < 0.5  # dense down-weighted (scaled: larger weight = 1)
    assert result.tuned_count + result.heldout_count == len(questions)
    assert set(result.heldout) == {"dense", "bm25", "equal", "calibrated"}


def test_stored_weights_are_used_by_hybrid_retrieval(kb, tmp_path):
    questions = questions_with_gold(kb.all_chunks(), 20, seed=2)
    result = calibrate_fusion(_KbWithNoisyDense(kb), questions, rrf_k=60, candidates=20, embedder=kb.embedder_name)
    path = result.save(kb.path)
    try:
        assert path.name == FUSION_FILE and load_fusion(kb.path) == result
        assert HybridRetriever(kb, kb.settings.retrieval).weights == result.weights
        assert fusion_weights(kb.path, "another-embedder") is None  # made with another model: not used
        equal = kb.settings.retrieval.__class__(fusion="equal")
        assert HybridRetriever(kb, equal).weights == (1.0, 1.0)
        hits = HybridRetriever(kb, kb.settings.retrieval).retrieve("Tucson warehouse parcels", 3, mode="hybrid")
        d, b = result.weights
        for h in hits:  # each fused score is the weighted sum of the two reciprocal ranks
            assert h.fused is not None and h.fused <= (d + b) / 61 + 1e-9
        with pytest.raises(ConfigError, match="retrieval.fusion"):
            HybridRetriever(kb, kb.settings.retrieval.__class__(fusion="magic"))
    finally:
        path.unlink()


def test_damaged_file_and_tuned_questions_left_out_of_reports(tmp_path):
    (tmp_path / FUSION_FILE).write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="calibrate-fusion"):
        load_fusion(tmp_path)
    (tmp_path / FUSION_FILE).write_text(json.dumps({
        "dense_weight": 1.0, "bm25_weight": 0.4, "rrf_k": 60, "tuned": {}, "heldout": {}, "tuned_count": 1,
        "heldout_count": 1, "tuned_question_ids": ["q1"]}))
    kept, notes = exclude_tuned([QAExample("a?", "x", id="q1"), QAExample("b?", "y", id="q2")], tmp_path)
    assert [q.id for q in kept] == ["q2"] and "calibrate-fusion" in notes[0]
