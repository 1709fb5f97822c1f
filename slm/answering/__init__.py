"""Answering: the prompt and its safety, the answerer, citations, abstention, the served answerer,
source views and feedback."""
