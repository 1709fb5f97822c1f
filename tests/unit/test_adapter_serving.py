"""Which adapter is promoted and may be served: the one rule (slm.adapters.serving), and that the answering
service (CLI, UI, evaluation) and the API's model host pick the same adapter in every registry state."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from slm.adapters.registry import AdapterInfo, Registry
from slm.adapters.serving import promoted_version, servable
from slm.answering.service import resolve_adapter
from slm.api.runtime import FactoryLoader, ModelHost
from slm.config import Settings


def _adapter_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "src" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def _no_registry(tmp_path, registry, base):
    pass


def _registered_not_promoted(tmp_path, registry, base):
    registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo(base=base))


def _promoted(tmp_path, registry, base):
    v1 = registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo(base=base, audiences=("public",)))
    registry.promote(v1.version)


def _promoted_then_marked_rejected(tmp_path, registry, base):
    # promote() refuses a rejected version, but an info.json edited (or written by another slm) can say so
    _promoted(tmp_path, registry, base)
    registry.update_info("v1", status="rejected")


def _promoted_on_another_base(tmp_path, registry, base):
    v1 = registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo(base="some/other-model"))
    registry.promote(v1.version)


def _promoted_without_recorded_base(tmp_path, registry, base):
    v1 = registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo())
    registry.promote(v1.version)


def _current_names_a_missing_version(tmp_path, registry, base):
    _promoted(tmp_path, registry, base)
    (registry.root / "current").write_text("v7\n")


def _rolled_back_to_a_good_version(tmp_path, registry, base):
    _promoted(tmp_path, registry, base)
    v2 = registry.register(_adapter_dir(tmp_path, "a2"), AdapterInfo(base=base))
    registry.promote(v2.version)
    registry.rollback()


STATES = {  # registry state -> the registry version both must serve (None: the base model)
    _no_registry: None,
    _registered_not_promoted: None,
    _promoted: "v1",
    _promoted_then_marked_rejected: None,
    _promoted_on_another_base: None,
    _promoted_without_recorded_base: "v1",
    _current_names_a_missing_version: None,
    _rolled_back_to_a_good_version: "v1",
}


@pytest.mark.parametrize("state", list(STATES), ids=lambda f: f.__name__.strip("_"))
def test_service_and_api_serve_the_same_promoted_adapter(tmp_path, state):
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    state(tmp_path, registry, settings.generation.model)

    resolved = resolve_adapter(settings, tmp_path)
    host = ModelHost(settings, FactoryLoader(lambda adapter: object()), registry=registry)
    host.load_now()

    service_choice = resolved.label if resolved else None
    api_choice = host.default_model.adapter
    assert service_choice == api_choice == STATES[state]
    if resolved is not None:
        assert resolved.path == tmp_path / "adapters" / resolved.label


def test_a_rejected_or_foreign_promoted_version_is_logged(tmp_path, caplog):
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    _promoted_then_marked_rejected(tmp_path, registry, settings.generation.model)
    with caplog.at_level(logging.WARNING, logger="slm.adapters.serving"):
        assert promoted_version(registry, settings.generation.model) is None
    assert "v1 is marked rejected" in caplog.text
    caplog.clear()
    registry.update_info("v1", status="promoted")
    with caplog.at_level(logging.WARNING, logger="slm.adapters.serving"):
        assert promoted_version(registry, "another/base") is None
    assert "trained on " + settings.generation.model + ", not another/base" in caplog.text


def test_servable_checks_status_and_base(tmp_path):
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo(base="m"))
    assert servable(v1, "m") and not servable(v1, "n")
    assert not servable(registry.update_info("v1", status="rejected"), "m")
    assert servable(registry.register(_adapter_dir(tmp_path, "a2"), AdapterInfo()), "n")  # base not recorded
