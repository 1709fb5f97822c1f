"""Adapters and audiences: what training records, which callers a tuned adapter may serve (library,
service, API model selection), and that no request can name an adapter it may not use."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from slm.api.errors import ApiError
from slm.api.runtime import FactoryLoader, ModelHost, may_use
from slm.config import Settings
from slm.adapters.registry import AdapterInfo, Registry
from slm.answering.service import TRUSTED_ONLY, build_answerer, resolve_adapter
from slm.training.recipe import training_audiences
from slm.types import Chunk
from tests.unit.test_answering import CHUNKS, ListRetriever, ScriptedGenerator


def chunk(doc: str, audiences: tuple[str, ...]) -> Chunk:
    return Chunk(id=f"{doc}::0000", doc_id=doc, text="text", start=0, end=4, audiences=audiences)


def test_training_audiences_cover_every_training_document():
    public, both, hr = chunk("p", ("public",)), chunk("b", ("public", "employees")), chunk("h", ("hr",))
    assert training_audiences([public, both], None) == ("employees", "public")  # trusted run: all labels
    assert training_audiences([public, both], frozenset({"public"})) == ("public",)  # every doc is public
    assert training_audiences([public, hr], None) == ("hr", "public")
    assert training_audiences([public, chunk("n", ())], None) == ("*", "public")  # unlabelled: trusted only
    assert training_audiences([chunk("x", ("HR",))], frozenset({"hr"})) == ("hr",)


class FakeKB:
    def __init__(self, path: Path):
        self.path = path

    def retriever(self):
        return AnyoneRetriever()


class AnyoneRetriever:
    """Every caller gets the same passages: these tests are about which generator answers."""

    def retrieve(self, query, k=5, *, audiences=None, **_):
        return ListRetriever(list(CHUNKS)).retrieve(query, k)


def adapter_dir(root: Path, name: str, info: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    if info is not None:
        (folder / "info.json").write_text(json.dumps(info))
    return folder


@pytest.fixture()
def scripted(monkeypatch):
    """load_generator → a scripted 'tuned' generator when an adapter is given, else 'base'."""
    def load(settings, adapter=None):
        return ScriptedGenerator("tuned [1]." if adapter else "base [1].", name="m", adapter=str(adapter) if adapter else None)

    monkeypatch.setattr("slm.generation.backends.load_generator", load)


Q = "How many days of annual leave?"


def test_an_adapter_with_no_recorded_audiences_serves_only_trusted_callers(tmp_path, scripted):
    settings = Settings(kb=tmp_path)
    folder = adapter_dir(tmp_path, "exported")  # no info.json: nobody knows what it learned
    assert resolve_adapter(settings, tmp_path, str(folder)).serving_audiences == TRUSTED_ONLY
    answerer = build_answerer(settings, kb=FakeKB(tmp_path), adapter=str(folder))
    assert answerer.answer(Q).text.startswith("tuned")  # trusted (None)
    for audiences in (frozenset({"public"}), frozenset({"employees", "hr", "finance"}), frozenset()):
        assert answerer.answer(Q, audiences=audiences).text.startswith("base"), audiences


def test_recorded_audiences_decide_per_caller(tmp_path, scripted):
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(adapter_dir(tmp_path, "a"), AdapterInfo(base=settings.generation.model, audiences=("public",)))
    registry.promote(v1.version)
    answerer = build_answerer(settings, kb=FakeKB(tmp_path))  # the promoted customer adapter
    assert answerer.answer(Q, audiences=frozenset({"public"})).text.startswith("tuned")
    assert answerer.answer(Q, audiences=frozenset({"public", "employees"})).text.startswith("tuned")
    assert answerer.answer(Q, audiences=frozenset({"employees"})).text.startswith("base")
    # a registry folder given by path keeps its recorded audiences
    assert resolve_adapter(settings, tmp_path, str(v1.path)).serving_audiences == ("public",)
    v2 = registry.register(adapter_dir(tmp_path, "b"), AdapterInfo(base=settings.generation.model, audiences=("hr", "public")))
    hr_answerer = build_answerer(settings, kb=FakeKB(tmp_path), adapter=v2.version)
    assert hr_answerer.answer(Q, audiences=frozenset({"public"})).text.startswith("base")
    assert hr_answerer.answer(Q, audiences=frozenset({"public", "hr"})).text.startswith("tuned")


def host_with(tmp_path: Path, versions: dict[str, list[str]]) -> ModelHost:
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    for name, audiences in versions.items():
        registry.register(adapter_dir(tmp_path, name), AdapterInfo(base=settings.generation.model, audiences=audiences))
    host = ModelHost(settings, FactoryLoader(lambda adapter: object()), registry=registry)
    host.load_now()
    return host


def test_api_model_selection_refuses_adapters_beyond_the_keys_audiences(tmp_path):
    host = host_with(tmp_path, {"public": ["public"], "hr": ["hr", "public"], "all": ["*", "public"], "none": []})
    public, hr = frozenset({"public"}), frozenset({"public", "hr"})
    listed = {m.id for m, _ in host.models_for(public)}
    assert listed == {"slm-base", "slm:v1"}  # /v1/models lists only what the key may use
    assert {m.id for m, _ in host.models_for(hr)} == {"slm-base", "slm:v1", "slm:v2"}
    assert {m.id for m, _ in host.models_for(None)} == {"slm-base", "slm:v1", "slm:v2", "slm:v3", "slm:v4"}
    assert host.resolve("slm:v1", public).adapter == "v1"
    for name in ("slm:v2", "slm:v3", "slm:v4", "v2"):
        with pytest.raises(ApiError) as err:
            host.resolve(name, public)
        assert err.value.status == 403, name
    assert not may_use(host.resolve("slm:v3", None), frozenset({"public", "hr", "finance", "employees"}))


def test_promoted_adapter_of_other_audiences_falls_back_to_base_for_the_default_model(tmp_path):
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(adapter_dir(tmp_path, "hr"), AdapterInfo(base=settings.generation.model, audiences=("hr",)))
    registry.promote(v1.version)
    host = ModelHost(settings, FactoryLoader(lambda adapter: object()), registry=registry)
    host.load_now()
    assert host.resolve(None, frozenset({"public"})).id == "slm-base"
    assert host.resolve("slm", frozenset({"public"})).id == "slm-base"
    assert host.resolve("slm", frozenset({"hr"})).id == "slm:v1"
