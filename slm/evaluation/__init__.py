"""Measure a knowledge base and its model: retrieval, answers, citations, abstention, latency, with CIs."""

from slm.evaluation.dataset import load_qa, load_qa_file
from slm.evaluation.runner import EvalOptions

__all__ = ["load_qa", "load_qa_file", "EvalOptions"]
