"""build_answerer: adapter resolution through the registry, calibrated threshold, extractive backend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from slm.answering.abstention import Calibration
from slm.answering.answerer import Answerer, ExtractiveAnswerer
from slm.config import DEFAULT_EMBEDDER, MIN_EVIDENCE_DEFAULTS, MULTILINGUAL_EMBEDDER, Settings
from slm.errors import AccessDenied, ModelLoadError, RegistryError
from slm.adapters.registry import AdapterInfo, Registry
from slm.answering.service import build_answerer, evidence_threshold_for, resolve_adapter
from tests.unit.test_answering import CHUNKS, ListRetriever, ScriptedGenerator


@dataclass
class FakeKB:
    path: Path

    def retriever(self):
        return ListRetriever(list(CHUNKS))


def _adapter_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def _calibration(threshold: float, embedder: str) -> Calibration:
    return Calibration(threshold=threshold, calibration_balanced_accuracy=1.0, heldout_balanced_accuracy=1.0,
                       heldout_answerable_kept=1.0, heldout_unanswerable_abstained=1.0, positives=1, negatives=1,
                       embedder=embedder)


def test_adapter_resolution_order(tmp_path):
    settings = Settings(kb=tmp_path)
    assert resolve_adapter(settings, tmp_path) is None  # no registry: base model
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(_adapter_dir(tmp_path, "a1"), AdapterInfo(base=settings.generation.model, audiences=("employees",)))
    assert resolve_adapter(settings, tmp_path) is None  # registered but not promoted
    registry.promote(v1.version)
    promoted = resolve_adapter(settings, tmp_path)
    assert promoted.label == "v1" and promoted.path == tmp_path / "adapters" / "v1" and promoted.audiences == ("employees",)
    assert resolve_adapter(settings, tmp_path, "base") is None
    explicit = _adapter_dir(tmp_path, "mine")
    assert resolve_adapter(settings, tmp_path, str(explicit)).path == explicit
    assert resolve_adapter(settings, tmp_path, "v1").label == "v1"
    with pytest.raises(RegistryError, match="v9"):
        resolve_adapter(settings, tmp_path, "v9")
    other = Settings(kb=tmp_path)
    other.generation.model = "some/other-model"
    assert resolve_adapter(other, tmp_path) is None  # promoted adapter belongs to another base


def test_unknown_adapter_without_registry_is_an_error(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a folder"):
        resolve_adapter(Settings(kb=tmp_path), tmp_path, "v2")


def _manifest(kb_path: Path, embedder: str) -> None:
    from slm.kb.index.manifest import Manifest
    from slm.kb.local import INDEX_DIR

    (kb_path / INDEX_DIR).mkdir(parents=True, exist_ok=True)
    Manifest(embedder=embedder, dimension=384, generation=1, chunks=3, created="").write(kb_path / INDEX_DIR / "manifest.json")


def test_build_answerer_uses_the_calibrated_threshold_of_the_same_embedder(tmp_path):
    settings = Settings(kb=tmp_path)
    gen = ScriptedGenerator("x [1].")
    uncalibrated = MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER]
    assert build_answerer(settings, kb=FakeKB(tmp_path), generator=gen).min_evidence == uncalibrated
    _calibration(0.123, DEFAULT_EMBEDDER).save(tmp_path)  # what `auto` gives a KB without zh/id chunks
    answerer = build_answerer(settings, kb=FakeKB(tmp_path), generator=gen)
    assert isinstance(answerer, Answerer) and answerer.min_evidence == pytest.approx(0.123)
    _calibration(0.9, "another-embedder").save(tmp_path)
    assert build_answerer(settings, kb=FakeKB(tmp_path), generator=gen).min_evidence == uncalibrated


def test_uncalibrated_threshold_follows_the_kbs_embedder(tmp_path):
    """A fresh zh/id KB (its index built with e5) abstains at e5's measured default, not MiniLM's: e5 scores an
    off-topic question ~0.8, over MiniLM's 0.35, so that default never abstained (issue 17)."""
    settings = Settings(kb=tmp_path)
    gen = ScriptedGenerator("x [1].")
    _manifest(tmp_path, MULTILINGUAL_EMBEDDER)
    e5_default = MIN_EVIDENCE_DEFAULTS[MULTILINGUAL_EMBEDDER]
    assert e5_default > MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER]
    assert evidence_threshold_for(settings, tmp_path) == e5_default
    assert build_answerer(settings, kb=FakeKB(tmp_path), generator=gen).min_evidence == e5_default
    settings.generation.backend = "extractive"
    assert build_answerer(settings, kb=FakeKB(tmp_path)).min_evidence == e5_default
    settings.answering.min_evidence = 0.5  # set explicitly: wins over the embedder's default
    assert evidence_threshold_for(settings, tmp_path) == 0.5
    _calibration(0.91, MULTILINGUAL_EMBEDDER).save(tmp_path)  # `slm calibrate` wins over both
    assert evidence_threshold_for(settings, tmp_path) == pytest.approx(0.91)
    _calibration(0.2, DEFAULT_EMBEDDER).save(tmp_path)  # made before the KB switched to e5: not used
    settings.answering.min_evidence = None
    assert evidence_threshold_for(settings, tmp_path) == e5_default
    pinned = Settings(kb=tmp_path)
    pinned.embedder.model = "some/local-embedder"  # an embedder nobody measured: the packaged default's number
    assert evidence_threshold_for(pinned, tmp_path) == MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER]


def test_live_answerer_threshold_follows_an_embedder_switch(tmp_path):
    """An English KB served with MiniLM's threshold gets e5's once an ingest switches it to e5 (a first Chinese
    document), without a restart."""
    from slm.answering.service import LiveAnswerer

    settings = Settings(kb=tmp_path)
    _manifest(tmp_path, DEFAULT_EMBEDDER)

    class SwitchingKB(FakeKB):
        changed = False

        def reload_if_changed(self):
            return self.changed

    kb = SwitchingKB(tmp_path)
    live = LiveAnswerer(settings, kb, check_every=0.0, background=False,
                        build=lambda adapter: build_answerer(settings, kb=kb, generator=ScriptedGenerator("x [1].")))
    assert live.current.min_evidence == MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER]
    _manifest(tmp_path, MULTILINGUAL_EMBEDDER)
    live.refresh()
    assert live.current.min_evidence == MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER]  # no new generation yet
    kb.changed = True
    live.refresh()
    assert live.current.min_evidence == MIN_EVIDENCE_DEFAULTS[MULTILINGUAL_EMBEDDER]


def test_extractive_backend_needs_no_model(tmp_path):
    settings = Settings(kb=tmp_path)
    settings.generation.backend = "extractive"
    answerer = build_answerer(settings, kb=FakeKB(tmp_path))
    assert isinstance(answerer, ExtractiveAnswerer)
    assert answerer.answer("annual leave days").citations[0].doc_id == "leave"


def test_callers_outside_the_adapters_audiences_get_the_base_model():
    tuned, base = ScriptedGenerator("tuned [1].", name="m", adapter="v1"), ScriptedGenerator("base [1].", name="m")
    from slm.config import AnsweringSettings, GenerationSettings, RetrievalSettings

    def make(factory):
        return Answerer(ListRetriever(list(CHUNKS)), tuned, AnsweringSettings(min_evidence=0.1), RetrievalSettings(),
                        GenerationSettings(), adapter_audiences=("employees", "hr"), base_generator=factory)

    answerer = make(lambda: base)
    q = "refunds accepted days"
    assert answerer.answer(q, audiences=frozenset({"employees", "hr"})).adapter == "v1"
    assert answerer.answer(q).adapter == "v1"  # trusted caller
    limited = answerer.answer(q, audiences=frozenset({"employees"}))
    assert limited.text == "base [1]." and limited.adapter is None
    with pytest.raises(AccessDenied):
        make(None).answer(q, audiences=frozenset({"employees"}))
