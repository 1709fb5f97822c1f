"""The LoRA loop on a tiny model: it learns, saves a plain PEFT adapter, and resumes exactly after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slm.generation.loading import load_causal_lm
from slm.training.data import EncodedExample, encode_examples
from slm.training.distill import TokenDistiller, kd_loss, same_vocabulary
from slm.training.lora import LoopConfig, LoraSpec, attach_lora, default_target_modules, latest_checkpoint, train_lora
from slm.training.raft import RaftExample
from slm.types import Chunk

REPO = Path(__file__).resolve().parents[2]


def _encoded(tokenizer, n=6) -> list[EncodedExample]:
    raft = []
    for i in range(n):
        chunks = tuple(
            Chunk(id=f"d{j}::0000", doc_id=f"d{j}", text=f"Policy {j}: refunds take {j + 10} days.", start=0, end=30)
            for j in range(i, i + 3)
        )
        raft.append(RaftExample(id=f"e{i}", question=f"How long do refunds take under policy {i}?",
                                passages=chunks, gold=0, answer=f"Refunds take {i + 10} days."))
    encoded, _ = encode_examples(raft, tokenizer, max_seq_len=1024)
    return encoded


def _lora_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_default_targets_per_architecture(tiny_lm_dir):
    model, _ = load_causal_lm(str(tiny_lm_dir))
    assert default_target_modules(model) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model.config.model_type = "something-new"  # unknown architecture: every Linear but the head
    assert "lm_head" not in default_target_modules(model) and "q_proj" in default_target_modules(model)


def test_loop_learns_and_saves_a_plain_peft_adapter(tiny_lm_dir, tmp_path):
    from peft import PeftModel

    torch.set_num_threads(1)
    model, tokenizer = load_causal_lm(str(tiny_lm_dir))
    encoded = _encoded(tokenizer)
    peft_model = attach_lora(model, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
    config = LoopConfig(epochs=12, learning_rate=1e-2, batch_size=3, warmup_ratio=0.0, save_every=0)
    result = train_lora(peft_model, encoded, config, tmp_path / "run", pad_id=tokenizer.pad_token_id, progress=False)
    assert result.steps == result.total_steps == 24
    assert sum(result.losses[-3:]) / 3 < result.losses[0] - 0.5  # it memorises the answers
    assert result.tokens == 12 * sum(len(e.input_ids) for e in encoded)
    assert result.answer_tokens == 12 * sum(e.answer_tokens for e in encoded)
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    # plain peft loads it onto a fresh base and reproduces the trained weights
    fresh, _ = load_causal_lm(str(tiny_lm_dir))
    loaded = PeftModel.from_pretrained(fresh, str(result.adapter_dir))
    trained = _lora_weights(peft_model)
    for key, value in _lora_weights(loaded).items():
        assert torch.allclose(value, trained[key])


def test_lr_schedule_warms_up_then_decays(tiny_lm_dir, tmp_path):
    from slm.training.lora import lr_lambda

    cosine = lr_lambda("cosine", 2, 10)
    assert cosine(0) == 0.5 and cosine(1) == 1.0 and cosine(2) == 1.0
    assert cosine(6) < cosine(3) and abs(cosine(10)) < 1e-9
    linear = lr_lambda("linear", 0, 4)
    assert [linear(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


SCRIPT = r"""
import json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
from slm.generation.loading import load_causal_lm
from slm.training.data import EncodedExample
from slm.training.lora import LoopConfig, LoraSpec, attach_lora, train_lora
model_dir, data, run_dir, resume, delay = sys.argv[1:]
model, tok = load_causal_lm(model_dir)
examples = [EncodedExample(e["id"], tuple(e["input_ids"]), tuple(e["labels"])) for e in json.loads(Path(data).read_text())]
peft_model = attach_lora(model, LoraSpec(r=4, alpha=8, dropout=0.1), seed=0)
if float(delay):
    peft_model.register_forward_pre_hook(lambda *a: time.sleep(float(delay)))
config = LoopConfig(epochs=5, learning_rate=5e-3, batch_size=2, grad_accum=2, save_every=2, seed=3)
result = train_lora(peft_model, examples, config, Path(run_dir), pad_id=tok.pad_token_id, resume=resume == "1", progress=False)
print(json.dumps({"steps": result.steps, "resumed_from": result.resumed_from, "losses": result.losses}))
"""


def _run(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_sigkilled_run_resumes_to_the_same_result(tiny_lm_dir, tmp_path):
    from safetensors.torch import load_file

    _, tokenizer = load_causal_lm(str(tiny_lm_dir))
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": e.id, "input_ids": e.input_ids, "labels": e.labels} for e in _encoded(tokenizer)]))

    # uninterrupted reference
    ref = _run([tiny_lm_dir, data, tmp_path / "ref", 0, 0])
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    reference = json.loads(out.strip().splitlines()[-1])

    # a run killed hard after its second checkpoint, then resumed
    victim = _run([tiny_lm_dir, data, tmp_path / "run", 0, 0.15])
    deadline = time.time() + 240
    while time.time() < deadline:
        checkpoint = latest_checkpoint(tmp_path / "run")
        if checkpoint is not None and checkpoint.name >= "step-000004":
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "adapter").exists()  # it really did not finish

    resumed = _run([tiny_lm_dir, data, tmp_path / "run", 1, 0])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["resumed_from"] >= 4 and result["steps"] == reference["steps"]
    assert result["losses"] == pytest.approx(reference["losses"], abs=1e-5)
    a = load_file(str(tmp_path / "ref" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    assert kd_loss(logits, logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits, torch.randn(2, 5, 11), labels).item() > 0.01
    assert kd_loss(logits, torch.randn(2, 5, 11), torch.full((2, 5), -100)).item() == 0.0


def test_vocabulary_check_and_self_distillation_step(tiny_lm_dir, tmp_path):
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    model, tokenizer = load_causal_lm(str(tiny_lm_dir))
    assert same_vocabulary(tokenizer, AutoTokenizer.from_pretrained(tiny_lm_dir))
    other = AutoTokenizer.from_pretrained(tiny_lm_dir)
    other.add_tokens(["<extra-token>"])
    assert not same_vocabulary(tokenizer, other)
    peft_model = attach_lora(model, LoraSpec(r=4, alpha=8, dropout=0.0), seed=0)
    distiller = TokenDistiller.self_distill(peft_model, kd_weight=0.5)
    config = LoopConfig(epochs=1, batch_size=3, save_every=0)
    result = train_lora(peft_model, _encoded(tokenizer), config, tmp_path / "kd", pad_id=tokenizer.pad_token_id,
                        distiller=distiller, progress=False)
    plain_model, _ = load_causal_lm(str(tiny_lm_dir))
    plain = train_lora(attach_lora(plain_model, LoraSpec(r=4, alpha=8, dropout=0.0), seed=0), _encoded(tokenizer),
                       config, tmp_path / "ce", pad_id=tokenizer.pad_token_id, progress=False)
    # LoRA starts as a no-op, so the student equals its base teacher: KL 0, loss = half the CE
    assert result.steps == 2
    assert result.losses[0] == pytest.approx(0.5 * plain.losses[0], rel=1e-4)
