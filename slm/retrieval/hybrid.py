"""Hybrid retrieval: dense (FAISS or pgvector) and BM25 candidates, fused by weighted reciprocal rank, optionally reranked
by a cross-encoder; the caller's audiences restrict the search itself, so k visible hits come back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from slm.config import RetrievalSettings
from slm.errors import ConfigError
from slm.types import Hit

if TYPE_CHECKING:
    from slm.kb.local import KnowledgeBase
    from slm.retrieval.rerank import Reranker

MODES = ("dense", "bm25", "hybrid")


FUSIONS = ("calibrated", "equal")


def rrf(rankings: list[np.ndarray], rrf_k: int) -> dict[int, float]:
    """Reciprocal rank fusion with equal weights: each list adds 1 / (rrf_k + rank) to every position it ranks."""
    from slm.retrieval.fusion import weighted_rrf

    return weighted_rrf(rankings, [1.0] * len(rankings), rrf_k)


class HybridRetriever:
    """`retrieve(query, k)` → hits ordered by `Hit.score`; `Hit.dense` is always the cosine similarity."""

    def __init__(self, kb: "KnowledgeBase", settings: RetrievalSettings, *, reranker: "Reranker | None" = None):
        self.kb = kb
        self.settings = settings
        self._reranker = reranker
        self.weights = self._fusion_weights()

    def _fusion_weights(self) -> tuple[float, float]:
        """(dense, bm25) weights: what `slm calibrate-fusion` stored with the KB, else equal (plain RRF)."""
        fusion = (self.settings.fusion or "calibrated").strip().lower()
        if fusion not in FUSIONS:
            raise ConfigError(f"retrieval.fusion: unknown value '{self.settings.fusion}'; use one of {', '.join(FUSIONS)}")
        if fusion == "calibrated":
            from slm.retrieval.fusion import fusion_weights

            weights = fusion_weights(getattr(self.kb, "path", None), self.kb.embedder_name)
            if weights is not None:
                return weights
        return 1.0, 1.0

    def reranker(self) -> "Reranker":
        if self._reranker is None:
            if not self.settings.reranker:
                raise ConfigError(
                    "reranking was asked for but no reranker is configured: set retrieval.reranker to a "
                    "cross-encoder spec (a local folder or hub id)"
                )
            from slm.retrieval.rerank import load_reranker

            self._reranker = load_reranker(self.settings.reranker)
        return self._reranker

    def retrieve(
        self,
        query: str,
        k: int = 5,
        *,
        audiences: frozenset[str] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[Hit]:
        mode = (mode or self.settings.mode).lower()
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode '{mode}'; use one of {', '.join(MODES)}")
        rerank = self.settings.rerank if rerank is None else rerank
        index = self.kb.index()
        if index is None or index.size == 0 or k <= 0 or not query.strip():
            return []
        allowed = index.mask_for(audiences)
        if allowed is not None and not allowed.any():
            return []
        depth = max(self.settings.candidates, k)
        query_vector = self.kb.embedder().encode_query(query)

        dense_pos = dense_scores = sparse_pos = sparse_scores = None
        if mode in ("dense", "hybrid"):
            dense_pos, dense_scores = index.search_dense(query_vector, depth, audiences)
        if mode in ("bm25", "hybrid"):
            sparse_pos, sparse_scores = index.search_sparse(query, depth, audiences)

        sparse_of = dict(zip(map(int, sparse_pos), map(float, sparse_scores))) if sparse_pos is not None else {}
        fused_of: dict[int, float] = {}
        if mode == "dense":
            order = [int(p) for p in dense_pos]
            base = dict(zip(order, map(float, dense_scores)))
        elif mode == "bm25":
            order = [int(p) for p in sparse_pos]
            base = sparse_of
        else:
            from slm.retrieval.fusion import weighted_rrf

            fused_of = weighted_rrf([dense_pos, sparse_pos], self.weights, self.settings.rrf_k)
            order = sorted(fused_of, key=lambda p: -fused_of[p])
            base = fused_of

        rerank_of: dict[int, float] = {}
        if rerank and order:
            reranker = self.reranker()
            depth_r = max(k, min(len(order), self.settings.rerank_candidates))
            head = order[:depth_r]
            chunks = self._chunks(index, head, audiences)
            from slm.kb.chunking import context_text  # what was indexed: the chunk with its title and headings

            scores = reranker.score(query, [context_text(chunks[p]) for p in head if p in chunks])
            rerank_of = dict(zip([p for p in head if p in chunks], map(float, scores)))
            order = sorted(rerank_of, key=lambda p: -rerank_of[p])

        top = order[: k * 2]  # a little slack for chunks deleted since this generation was loaded
        chunks = self._chunks(index, top, audiences)
        top = [p for p in top if p in chunks][:k]
        cosines = index.cosines(np.asarray(top, dtype=np.int64), query_vector) if top else []
        hits = []
        for position, cosine in zip(top, cosines):
            score = rerank_of[position] if rerank_of else base[position]
            hits.append(
                Hit(
                    chunk=chunks[position],
                    score=float(score),
                    dense=float(cosine),
                    sparse=sparse_of.get(position),
                    fused=fused_of.get(position),
                    rerank=rerank_of.get(position),
                )
            )
        return hits

    def _chunks(self, index, positions: list[int], audiences: frozenset[str] | None) -> dict:
        """Chunks by index position, as the store holds them now. The store's labels are checked again:
        a process still on an older index generation must not serve a chunk re-labelled since."""
        from slm.access.labels import can_see

        ids = [index.chunk_ids[p] for p in positions]
        by_id = {c.id: c for c in self.kb.get_chunks(ids) if can_see(c.audiences, audiences)}
        return {p: by_id[index.chunk_ids[p]] for p in positions if index.chunk_ids[p] in by_id}
