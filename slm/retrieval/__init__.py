"""Retrieval: hybrid dense + sparse search inside the audience filter, calibrated fusion,
reranking, LangChain."""
