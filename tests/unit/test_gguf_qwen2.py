"""GGUF export for the qwen2 architecture (Qwen2.5): a tiny random Qwen2 + LoRA, merged and served by llama.cpp,
gives transformers' logits (q/k/v biases included, no llama-style q/k reordering)."""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slm[llamacpp]')")

from slm.answering.prompting import build_messages, render_prompt  # noqa: E402
from slm.types import Chunk  # noqa: E402

MESSAGES = build_messages(
    "How many days of annual leave?",
    [Chunk(id="d::0", doc_id="d", start=0, end=0, title="Guide", section=("Leave",),
           text="Employees may take 25 days of annual leave; requests go through the HR portal.")],
)


@pytest.fixture(scope="module")
def qwen_adapter(tiny_qwen2_dir, tmp_path_factory):
    """A LoRA on the qwen2 default targets with random B matrices, so the merge changes every projection."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slm.training.lora import default_target_modules

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    targets = list(default_target_modules(model))
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=targets)
    path = tmp_path_factory.mktemp("tiny-qwen-lora") / "v1"
    get_peft_model(model, config).save_pretrained(path)
    return path


def _hf_logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path, ids):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def test_the_qwen2_lora_targets_are_every_attention_and_mlp_projection(tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    from slm.training.lora import default_target_modules

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    assert set(default_target_modules(model)) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}


def test_a_merged_qwen2_export_gives_transformers_logits(tiny_qwen2_dir, qwen_adapter, tmp_path):
    import gguf

    from slm.adapters.gguf_export import export_gguf
    from slm.adapters.merge import merged_model

    result = export_gguf(str(tiny_qwen2_dir), qwen_adapter, tmp_path / "tiny-qwen.gguf", quant="f32", label="v1")
    model, tokenizer = merged_model(str(tiny_qwen2_dir), qwen_adapter)
    ids = tokenizer(render_prompt(tokenizer, MESSAGES), add_special_tokens=False)["input_ids"]
    hf = _hf_logits(model, ids)
    ours = _llama_logits(result.path, ids)
    assert np.abs(hf - ours).max() < 1e-3
    assert (hf.argmax(-1) == ours.argmax(-1)).all()

    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    served = LlamaCppGenerator(load_llama(result.path, context_tokens=512, threads=2), name="tiny-qwen")
    text = render_prompt(tokenizer, MESSAGES)
    assert served.render(MESSAGES) == text  # the ChatML template travelled with the file
    assert served.tokenize(text) == ids  # llama.cpp's qwen2 pre-tokenizer splits as transformers' does

    reader = gguf.GGUFReader(str(result.path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen2"
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= names
    assert "blk.0.attn_output.bias" not in names


def test_dropping_the_biases_would_change_the_logits(tiny_qwen2_dir):
    """The fixture's biases matter: the test above would catch an export that leaves them out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    ids = tokenizer(render_prompt(tokenizer, MESSAGES), add_special_tokens=False)["input_ids"]
    before = _hf_logits(model, ids)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("proj.bias"):
                param.zero_()
    assert np.abs(before - _hf_logits(model, ids)).max() > 1e-2
