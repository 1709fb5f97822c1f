"""Gated promotion after training: compare the new version with the served one on the same eval run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from slm.errors import TrainingError
from slm.adapters.registry import Registry
from slm.training.gating import gate_new_version


def _register(root, name):
    folder = root / f"src-{name}"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    return Registry(root / "kb" / "adapters").register(folder, {"base": "b", "audiences": [], "data_hash": "h"})


def _fake_eval(current: dict, candidate: dict, calls: list):
    def run(settings, qa_paths, variants, out, **kwargs):
        calls.append((variants, kwargs.get("limit")))
        return {"variants": {"current": {"metrics": current}, variants[1]: {"metrics": candidate}}}

    return run


def test_better_candidate_is_promoted(tmp_path):
    v = _register(tmp_path, "a")
    kb = SimpleNamespace(path=tmp_path / "kb")
    calls: list = []
    decision = gate_new_version(
        None, kb, v.version, [tmp_path / "qa.jsonl"], tmp_path / "out", limit=10,
        run_eval=_fake_eval({"answer_f1": 0.20, "citation_accuracy": 0.5, "source_hit@5": 0.9},
                            {"answer_f1": 0.30, "citation_accuracy": 0.5, "source_hit@5": 0.1}, calls),
    )
    assert calls == [(["current", "v1"], 10)]
    assert decision.promote  # retrieval metrics are not part of the gate
    registry = Registry(tmp_path / "kb" / "adapters")
    assert registry.current().version == "v1" and registry.get("v1").metrics["answer_f1"] == 0.30


def test_worse_candidate_is_rejected_and_the_served_one_stays(tmp_path):
    _register(tmp_path, "a")
    registry = Registry(tmp_path / "kb" / "adapters")
    registry.promote("v1")
    v2 = _register(tmp_path, "b")
    kb = SimpleNamespace(path=tmp_path / "kb")
    decision = gate_new_version(
        None, kb, v2.version, [tmp_path / "qa.jsonl"], tmp_path / "out",
        run_eval=_fake_eval({"answer_f1": 0.30, "citation_accuracy": 0.6}, {"answer_f1": 0.35, "citation_accuracy": 0.4}, []),
    )
    assert not decision.promote
    assert registry.current().version == "v1"
    assert registry.get("v2").status == "rejected"
    assert any("citation_accuracy" in r and "worse" in r for r in registry.get("v2").info["rejection"]["reasons"])


def test_gate_needs_questions(tmp_path):
    with pytest.raises(TrainingError, match="--eval-qa"):
        gate_new_version(None, SimpleNamespace(path=tmp_path), "v1", [], tmp_path)
