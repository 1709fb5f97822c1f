"""Gated promotion after training: compare the new version with the served one on the same eval run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from slm.errors import TrainingError
from slm.adapters.registry import AdapterInfo, Registry
from slm.evaluation.candidate import SERVED, Comparison, compare_with_served
from slm.training.gating import gate_new_version


def _register(root, name):
    folder = root / f"src-{name}"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    return Registry(root / "kb" / "adapters").register(folder, AdapterInfo(base="b", audiences=(), data_hash="h"))


def _fake_eval(current: dict, candidate: dict, calls: list):
    def compare(settings, kb, version, qa_files, out, **kwargs):
        calls.append((version, kwargs.get("limit")))
        return Comparison(served=current, candidate=candidate, questions=10, report_dir=out)

    return compare


def test_better_candidate_is_promoted(tmp_path):
    v = _register(tmp_path, "a")
    kb = SimpleNamespace(path=tmp_path / "kb")
    calls: list = []
    decision = gate_new_version(
        None, kb, v.version, [tmp_path / "qa.jsonl"], tmp_path / "out", limit=10,
        compare=_fake_eval({"answer_f1": 0.20, "citation_accuracy": 0.5, "source_hit@5": 0.9},
                            {"answer_f1": 0.30, "citation_accuracy": 0.5, "source_hit@5": 0.1}, calls),
    )
    assert calls == [("v1", 10)]
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
        compare=_fake_eval({"answer_f1": 0.30, "citation_accuracy": 0.6}, {"answer_f1": 0.35, "citation_accuracy": 0.4}, []),
    )
    assert not decision.promote
    assert registry.current().version == "v1"
    assert registry.get("v2").status == "rejected"
    assert any("citation_accuracy" in r and "worse" in r for r in registry.get("v2").info.rejection["reasons"])


def test_gate_needs_questions(tmp_path):
    with pytest.raises(TrainingError, match="--eval-qa"):
        gate_new_version(None, SimpleNamespace(path=tmp_path), "v1", [], tmp_path)


def test_candidate_and_served_answer_the_same_questions_through_slm_eval(tmp_path):
    """The one comparison both gates read (training's and retraining's): a real `slm eval` run of the two."""
    from slm.config import Settings
    from tests.unit.test_eval_runner import QUESTIONS, FakeKB, make_factory

    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n", encoding="utf-8")
    settings = Settings(kb=tmp_path / "kb")
    generators: dict = {}
    result = compare_with_served(settings, FakeKB(tmp_path / "kb"), "v2", [qa], tmp_path / "gate", command="test",
                                 limit=3, resamples=50, factory=make_factory(settings, generators))
    assert result.questions == 3 and result.report_dir == tmp_path / "gate"
    summary = json.loads((tmp_path / "gate" / "summary.json").read_text())
    assert set(summary["variants"]) == {SERVED, "v2"} and summary["command"] == "test"
    # the fake v2 quotes exactly as the served model does: the same metrics, all measured
    assert result.candidate["answer_f1"] == result.served["answer_f1"] > 0
    assert set(generators) == {"base", "v2"}
    assert all(g.calls <= 3 for g in generators.values())  # no closed-book questions on top
