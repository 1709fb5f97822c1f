"""Shared fixtures: offline mode everywhere, tiny models built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "SLM_CACHE_DIR" not in os.environ:  # exported ONNX embedders (embedder.backend auto) stay out of ~/.cache
    import tempfile

    os.environ["SLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="slm-test-cache-")

import pytest  # noqa: E402

from tests.helpers.tiny_models import tiny_causal_lm_dir, tiny_qwen2_lm_dir, tiny_sentence_transformer_dir  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """Folder of a tiny random Llama with a ChatML tokenizer (a valid `generation.model` spec)."""
    return tiny_causal_lm_dir(tmp_path_factory.mktemp("tiny-lm") / "model")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """Folder of a tiny random Qwen2 (q/k/v biases) with the same ChatML tokenizer as tiny_lm_dir."""
    return tiny_qwen2_lm_dir(tmp_path_factory.mktemp("tiny-qwen2") / "model")


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory):
    """Folder of a tiny random sentence-transformer (a valid `embedder.model` spec)."""
    return tiny_sentence_transformer_dir(tmp_path_factory.mktemp("tiny-st") / "model")
