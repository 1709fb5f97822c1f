"""LangChain adapter: the knowledge base as a `BaseRetriever` (so it drops into any LangChain chain)."""

from __future__ import annotations

from typing import Any, Optional

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LcDocument
from langchain_core.retrievers import BaseRetriever

from slm.config import AnsweringSettings
from slm.types import Hit


def hit_to_document(hit: Hit) -> LcDocument:
    """A LangChain Document: the chunk text, with where it comes from and every score in metadata."""
    c = hit.chunk
    return LcDocument(
        page_content=c.text,
        id=c.id,
        metadata={
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "title": c.title,
            "source": c.source,
            "location": c.location,
            "section": list(c.section),
            "anchor": c.anchor,
            "page": c.page,
            "start": c.start,
            "end": c.end,
            "audiences": list(c.audiences),
            "score": hit.score,
            "dense": hit.dense,
            "sparse": hit.sparse,
            "fused": hit.fused,
            "rerank": hit.rerank,
        },
    )


class SlmRetriever(BaseRetriever):
    """Wraps a `HybridRetriever` (from `KnowledgeBase.retriever()`); `audiences` restricts what it sees.
    A query over `max_query_chars` (answering.max_question_chars, the budget every entry point shares) is
    refused with RequestTooLarge before it is embedded or tokenised."""

    retriever: Any
    k: int = 5
    audiences: Optional[frozenset[str]] = None
    mode: Optional[str] = None
    rerank: Optional[bool] = None
    max_query_chars: int = AnsweringSettings().max_question_chars

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LcDocument]:
        from slm.answering.answerer import check_question

        query = check_question(query, self.max_query_chars)
        hits = self.retriever.retrieve(query, self.k, audiences=self.audiences, mode=self.mode, rerank=self.rerank)
        return [hit_to_document(h) for h in hits]
