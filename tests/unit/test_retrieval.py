"""Retrieval: modes, audience filtering inside the search, scores on every hit, reranking."""

import numpy as np
import pytest

from slm.errors import ConfigError
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retrieval.hybrid import HybridRetriever
from tests.helpers.kb import kb_settings, tiny_cross_encoder_dir, write_corpus


@pytest.fixture(scope="module")
def kb(tmp_path_factory, tiny_embedder_dir):
    root = tmp_path_factory.mktemp("retrieval")
    # 5 public documents (10 chunks) and 60 restricted ones: most of the KB is hidden from employees.
    corpus = write_corpus(root / "docs", secret_docs=60)
    settings = kb_settings(root / "kb", tiny_embedder_dir, candidates=5)
    base = KnowledgeBase.open(settings.kb, settings, create=True)
    ingest(corpus, base, progress=False)
    yield base
    base.close()


def _visible(kb, audiences):
    return [c for c in kb.all_chunks(audiences)]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_k_visible_hits_come_back_when_most_chunks_are_restricted(kb, mode):
    employees = frozenset({"employees"})
    visible = _visible(kb, employees)
    assert len(visible) == 10 and kb.index().size > 60
    # The query looks like the secret documents, and candidates=5 per retriever: a filter applied after
    # the search would return almost nothing.
    hits = kb.retriever().retrieve("Confidential refunds note", 8, audiences=employees, mode=mode)
    assert len(hits) == 8
    assert all(h.chunk.audiences == ("employees",) for h in hits)
    assert len({h.chunk.id for h in hits}) == 8


def test_bm25_filters_inside_the_search(kb):
    hits = kb.retriever().retrieve("Confidential refunds note", 10, audiences=frozenset({"employees"}), mode="bm25")
    assert hits and all(not h.chunk.doc_id.startswith("secret/") for h in hits)
    assert hits[0].chunk.doc_id == "refunds.md"
    hr = kb.retriever().retrieve("Confidential refunds note", 10, audiences=frozenset({"hr"}), mode="bm25")
    assert len(hr) == 10 and all(h.chunk.doc_id.startswith("secret/") for h in hr)


def test_caller_with_no_matching_label_sees_nothing(kb):
    assert kb.retriever().retrieve("refunds", 5, audiences=frozenset({"nobody"})) == []
    assert kb.retriever().retrieve("refunds", 5, audiences=frozenset()) == []


def test_trusted_caller_sees_everything(kb):
    hits = kb.retriever().retrieve("Confidential refunds note 7", 70, mode="bm25")
    assert any(h.chunk.doc_id.startswith("secret/") for h in hits)


def test_scores_filled_and_dense_is_cosine(kb):
    embedder = kb.embedder()
    query = "annual leave sick note"
    q = embedder.encode([query])[0]
    for mode in ("dense", "bm25", "hybrid"):
        hits = kb.retriever().retrieve(query, 4, mode=mode)
        assert hits
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for h in hits:
            from slm.kb.ingest import index_text

            expected = float(embedder.encode([index_text(h.chunk)])[0] @ q)
            assert h.dense == pytest.approx(expected, abs=1e-4)
            if mode == "bm25":
                assert h.sparse is not None and h.score == h.sparse
            if mode == "hybrid":
                assert h.fused is not None and h.score == h.fused
            if mode == "dense":
                assert h.score == pytest.approx(h.dense, abs=1e-5)


def test_hybrid_fuses_both_rankings(kb):
    r = kb.retriever()
    query = "Parcels ship from the Tucson warehouse"
    dense = [h.chunk.id for h in r.retrieve(query, 10, mode="dense")]
    sparse = [h.chunk.id for h in r.retrieve(query, 10, mode="bm25")]
    depth = kb.settings.retrieval.candidates  # each retriever contributes its top max(candidates, k)
    hybrid = r.retrieve(query, depth, mode="hybrid")
    assert len(hybrid) == min(depth, len(set(dense[:depth]) | set(sparse[:depth])))
    for h in hybrid:
        expected = sum(1 / (60 + ranked.index(h.chunk.id) + 1) for ranked in (dense[:depth], sparse[:depth])
                       if h.chunk.id in ranked)
        assert h.fused == pytest.approx(expected)
    assert [h.fused for h in hybrid] == sorted((h.fused for h in hybrid), reverse=True)
    # BM25 ranks the exact phrase first; where fusion puts it depends on the tiny random dense model, so only
    # its presence is checked (a fixed top hit made this test flaky across tokenizer trainings).
    assert kb.get_chunks([sparse[0]])[0].doc_id == "shipping.md"
    assert sparse[0] in {h.chunk.id for h in hybrid}


def test_rerank_rescores_the_fused_candidates(kb, tmp_path_factory):
    from slm.retrieval.rerank import load_reranker

    reranker = load_reranker(str(tiny_cross_encoder_dir(tmp_path_factory.mktemp("ce") / "model")))
    r = HybridRetriever(kb, kb.settings.retrieval, reranker=reranker)
    hits = r.retrieve("refund policy", 4, rerank=True, audiences=frozenset({"employees"}))
    assert len(hits) == 4 and all(h.rerank is not None and h.score == h.rerank for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    from slm.kb.ingest import index_text

    direct = reranker.score("refund policy", [index_text(h.chunk) for h in hits])
    np.testing.assert_allclose(direct, [h.rerank for h in hits], atol=1e-5)


def test_rerank_without_a_reranker_is_a_clear_error(kb):
    with pytest.raises(ConfigError, match="retrieval.reranker"):
        kb.retriever().retrieve("refund", 3, rerank=True)


def test_bad_mode_and_empty_query(kb):
    with pytest.raises(ConfigError, match="dense, bm25, hybrid"):
        kb.retriever().retrieve("refund", 3, mode="fuzzy")
    assert kb.retriever().retrieve("   ", 3) == []


def test_empty_kb_returns_nothing(tmp_path, tiny_embedder_dir):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as empty:
        assert empty.retriever().retrieve("anything", 3) == []
