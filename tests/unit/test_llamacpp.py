"""GGUF export of a tiny llama + LoRA, served by llama.cpp: same logits, same prompt, same greedy answer as transformers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slm[llamacpp]')")

from slm.config import GenerationSettings  # noqa: E402
from slm.errors import ExportError, GenerationError  # noqa: E402
from slm.answering.prompting import build_messages, render_prompt  # noqa: E402
from slm.types import Chunk  # noqa: E402

PASSAGES = [
    Chunk(id="d::0", doc_id="d", start=0, end=0, title="Guide", section=("Refunds",),
          text="The refund policy allows returns within 30 days of purchase with a receipt."),
    Chunk(id="d::1", doc_id="d", start=0, end=0, title="Guide", section=("Leave",),
          text="Employees may take 25 days of annual leave; requests go through the HR portal."),
]
MESSAGES = build_messages("How many days of annual leave?", PASSAGES, demo=True)


@pytest.fixture(scope="module")
def adapter_dir(tiny_lm_dir, tmp_path_factory):
    """A LoRA on every linear layer with random (non-zero) B matrices, so merging really changes the weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    path = tmp_path_factory.mktemp("tiny-lora") / "v1"
    get_peft_model(model, config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def merged(tiny_lm_dir, adapter_dir):
    from slm.adapters.merge import merged_model

    return merged_model(str(tiny_lm_dir), adapter_dir)


@pytest.fixture(scope="module")
def exported(tiny_lm_dir, adapter_dir, tmp_path_factory):
    """The merge written as f32, f16 and q8_0 GGUF files."""
    from slm.adapters.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("gguf")
    return {q: export_gguf(str(tiny_lm_dir), adapter_dir, out / f"tiny.{q}.gguf", quant=q, label="v1")
            for q in ("f32", "f16", "q8_0")}


def _hf_logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path, ids):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def test_prompt_is_the_transformers_prompt_token_for_token(merged, exported):
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    model, tokenizer = merged
    generator = LlamaCppGenerator(load_llama(exported["f32"].path, context_tokens=1024, threads=2), name="tiny")
    text = render_prompt(tokenizer, MESSAGES)
    assert generator.render(MESSAGES) == text
    assert generator.tokenize(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert generator.prompt_tokens(MESSAGES) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_merged_f32_export_gives_transformers_logits(merged, exported, tiny_lm_dir):
    model, tokenizer = merged
    ids = tokenizer(render_prompt(tokenizer, MESSAGES), add_special_tokens=False)["input_ids"]
    hf = _hf_logits(model, ids)
    ours = _llama_logits(exported["f32"].path, ids)
    assert np.abs(hf - ours).max() < 1e-3
    assert (hf.argmax(-1) == ours.argmax(-1)).all()
    # the adapter is in there: the base alone gives other logits
    from slm.adapters.merge import merged_model

    base, _ = merged_model(str(tiny_lm_dir), None)
    assert np.abs(_hf_logits(base, ids) - ours).max() > 1e-2


def test_f16_and_q8_0_stay_close(merged, exported):
    model, tokenizer = merged
    ids = tokenizer(render_prompt(tokenizer, MESSAGES), add_special_tokens=False)["input_ids"]
    hf = _hf_logits(model, ids)
    scale = np.abs(hf).max()
    for quant, tolerance, agreement in (("f16", 0.01, 0.99), ("q8_0", 0.1, 0.9)):
        ours = _llama_logits(exported[quant].path, ids)
        diff = np.abs(hf - ours).max()
        assert diff < tolerance * scale, (quant, diff, scale)
        assert (hf.argmax(-1) == ours.argmax(-1)).mean() >= agreement, quant  # greedy picks, position by position
    assert exported["q8_0"].bytes < exported["f16"].bytes < exported["f32"].bytes


def test_greedy_answer_matches_transformers(merged, exported):
    """Same prompt, greedy, answer-only repetition penalty, stop rules: the same text from both backends."""
    from slm.generation.backends import TransformersGenerator
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    model, tokenizer = merged
    settings = GenerationSettings(max_new_tokens=24, threads=2, repetition_penalty=1.3)
    ours = LlamaCppGenerator(load_llama(exported["f32"].path, context_tokens=1024, threads=2), name="tiny")
    theirs = TransformersGenerator(model, tokenizer, name="tiny")
    expected = theirs.generate(MESSAGES, settings)
    assert len(expected) > 8  # random weights, but the merged LoRA makes it write something
    assert ours.generate(MESSAGES, settings) == expected
    assert ours.last_generated_tokens() == 24
    # a stop sequence cuts both at the same place
    stopped = dataclasses.replace(settings, stop=[expected[5:8]])
    cut = ours.generate(MESSAGES, stopped)
    assert cut == theirs.generate(MESSAGES, stopped) == expected[: expected.index(expected[5:8])]
    assert ours.last_generated_tokens() < 24


def test_the_abstention_gate_moves_both_backends_off_a_first_token_the_model_does_not_mean(merged, exported, monkeypatch):
    """Pretend the model's own first greedy token starts the abstention: gated just above the probability the
    model gives it, both backends start elsewhere (and agree); just below, nothing changes."""
    import torch

    import slm.generation.backends as generation
    import slm.generation.llamacpp as llamacpp
    from slm.generation.backends import TransformersGenerator
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    model, tokenizer = merged
    settings = GenerationSettings(max_new_tokens=12, threads=2, repetition_penalty=1.3)
    theirs = TransformersGenerator(model, tokenizer, name="tiny")
    ours = LlamaCppGenerator(load_llama(exported["f32"].path, context_tokens=1024, threads=2), name="tiny")
    ids = tokenizer(render_prompt(tokenizer, MESSAGES), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        probs = torch.softmax(model(ids).logits[0, -1].float(), dim=-1)
    first, p_first = int(probs.argmax()), float(probs.max())
    monkeypatch.setattr(generation, "abstention_token", lambda tokenizer: first)
    real_gate = llamacpp._abstention_gate
    monkeypatch.setattr(llamacpp, "_abstention_gate", lambda settings, _first, length: real_gate(settings, [first], length))

    ungated = theirs.generate(MESSAGES, settings)
    gated = dataclasses.replace(settings, abstain_min_prob=min(1.0, p_first + 1e-3))
    moved = theirs.generate(MESSAGES, gated)
    assert moved != ungated and ours.generate(MESSAGES, gated) == moved
    kept = dataclasses.replace(settings, abstain_min_prob=p_first - 1e-3)
    assert theirs.generate(MESSAGES, kept) == ungated == ours.generate(MESSAGES, kept)


def test_exported_file_records_the_adapter(exported):
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    generator = LlamaCppGenerator(load_llama(exported["q8_0"].path, context_tokens=1024, threads=2), name="tiny")
    assert generator.adapter == "v1"  # the answerer then serves it as tuned weights (no worked example)
    assert exported["q8_0"].quant == "q8_0" and exported["q8_0"].adapter == "v1"


def test_backend_exports_an_adapter_once_and_reuses_it(tiny_lm_dir, adapter_dir, tmp_path, monkeypatch):
    from slm.generation.backends import load_generator

    monkeypatch.setenv("SLM_GGUF_CACHE", str(tmp_path / "cache"))
    settings = GenerationSettings(backend="llamacpp", model=str(tiny_lm_dir), gguf_quant="f16", context_tokens=1024,
                                  max_new_tokens=8, threads=2)
    generator = load_generator(settings, adapter_dir)
    files = list((tmp_path / "cache").glob("*.f16.gguf"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert isinstance(generator.generate(MESSAGES, settings), str)
    load_generator(settings, adapter_dir)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not exported again


def test_prompt_longer_than_the_context_is_a_clear_error(exported):
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama

    generator = LlamaCppGenerator(load_llama(exported["f16"].path, context_tokens=64, threads=2), name="tiny")
    with pytest.raises(GenerationError, match="context_tokens"):
        generator.generate(MESSAGES, GenerationSettings(max_new_tokens=4))


def test_export_refuses_what_it_cannot_write(tiny_lm_dir, tmp_path):
    from slm.adapters.gguf_export import export_gguf

    with pytest.raises(ExportError, match="unknown GGUF type"):
        export_gguf(str(tiny_lm_dir), None, tmp_path / "x.gguf", quant="q3_xyz")
    with pytest.raises(ExportError, match=r"\.gguf"):
        export_gguf(str(tiny_lm_dir), None, tmp_path / "x.bin", quant="f16")


def test_non_llama_architecture_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from slm.adapters.gguf_export import write_gguf

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64))
    with pytest.raises(ExportError, match="convert_hf_to_gguf"):
        write_gguf(model, None, tmp_path / "gpt2.gguf")


def test_cli_exports_the_promoted_adapter(tiny_lm_dir, adapter_dir, tmp_path):
    from typer.testing import CliRunner

    from slm.cli.main import app
    from slm.generation.llamacpp import LlamaCppGenerator, load_llama
    from slm.adapters.registry import AdapterInfo, Registry

    registry = Registry(tmp_path / "kb" / "adapters")
    registry.register(adapter_dir, AdapterInfo(base=str(tiny_lm_dir), audiences=("employees",), data_hash="0" * 16))
    runner = CliRunner()
    kb, out = str(tmp_path / "kb"), tmp_path / "tuned.gguf"
    nothing = runner.invoke(app, ["models", "export-gguf", "--out", str(out), "--kb", kb])
    assert nothing.exit_code != 0 and not out.exists()  # nothing promoted yet, no version named
    registry.promote("v1")
    done = runner.invoke(app, ["models", "export-gguf", "--out", str(out), "--quant", "f16", "--kb", kb])
    assert done.exit_code == 0, done.output
    assert "llamacpp" in done.output and out.is_file()
    assert LlamaCppGenerator(load_llama(out, context_tokens=256, threads=1), name="x").adapter == "v1"
