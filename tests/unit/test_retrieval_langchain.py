"""The LangChain adapter returns LangChain Documents from the same retrieval, audiences included."""

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retrieval.langchain import SlmRetriever
from tests.helpers.kb import kb_settings, write_corpus


@pytest.fixture
def kb(tmp_path, tiny_embedder_dir):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    base = KnowledgeBase.open(settings.kb, settings, create=True)
    ingest(write_corpus(tmp_path / "docs", secret_docs=3), base, progress=False)
    yield base
    base.close()


def test_invoke_returns_documents_with_locations(kb):
    retriever = SlmRetriever(retriever=kb.retriever(), k=3, mode="bm25")
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("Tucson warehouse parcels")
    assert docs and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["doc_id"] == "shipping.md"
    chunk = kb.get_chunks([top.metadata["chunk_id"]])[0]
    assert top.page_content == chunk.text and top.metadata["location"] == chunk.location
    assert top.metadata["dense"] is not None and top.metadata["sparse"] > 0


def test_audiences_restrict_the_langchain_retriever(kb):
    hr = SlmRetriever(retriever=kb.retriever(), k=20, mode="bm25", audiences=frozenset({"hr"})).invoke("Confidential refunds")
    staff = SlmRetriever(retriever=kb.retriever(), k=20, mode="bm25", audiences=frozenset({"employees"})).invoke("Confidential refunds")
    assert hr and all(d.metadata["doc_id"].startswith("secret/") for d in hr)
    assert staff and not [d for d in staff if d.metadata["doc_id"].startswith("secret/")]
