"""Attack 11 of the security review: a key created with `--audience Public` passed the API's adapter
check (which lower-cased) while the answerer (which did not) quietly answered with the base model and
the response still named the adapter. Labels are now normalised where they enter and by the one rule."""

from __future__ import annotations

import sqlite3

from slm.access.labels import can_see, may_use_adapter, normalize_label, parse_labels
from slm.api.runtime import FactoryLoader, ModelHost
from slm.config import Settings
from slm.api.keys import KeyStore
from slm.adapters.registry import AdapterInfo, Registry
from slm.answering.service import build_answerer
from tests.unit.test_access_adapters import FakeKB, Q, adapter_dir, scripted  # noqa: F401  (fixture)


def test_label_forms_compare_equal_everywhere():
    for form in ("Public", " public ", "PUBLIC", "'public'", "ＰＵＢＬＩＣ"):
        assert normalize_label(form) == "public", form
        assert can_see(("public",), frozenset({form}))
        assert can_see((form,), frozenset({"public"}))
        assert may_use_adapter((form,), frozenset({"public"}))
        assert may_use_adapter(("public",), frozenset({form}))
    assert parse_labels("Public, HR") == ("public", "hr")
    assert not may_use_adapter(("public", "hr"), frozenset({"Public"}))
    assert not may_use_adapter((), frozenset({"public"}))  # unknown training documents: trusted only
    assert may_use_adapter((), None) and may_use_adapter(None, frozenset())


def test_a_key_created_as_Public_gets_the_public_adapter_from_the_api_and_the_answerer(tmp_path, scripted):
    settings = Settings(kb=tmp_path)
    registry = Registry(tmp_path / "adapters")
    v1 = registry.register(adapter_dir(tmp_path, "a"), AdapterInfo(base=settings.generation.model, audiences=("public",)))
    registry.promote(v1.version)
    key = KeyStore.for_kb(tmp_path).create("helpdesk", ["Public"]).key
    assert key.audiences == ("public",)
    caller = key.caller_audiences
    host = ModelHost(settings, FactoryLoader(lambda adapter: object()), registry=registry)
    host.load_now()
    assert host.resolve(None, caller).id == "slm:v1"  # the API names the adapter ...
    answer = build_answerer(settings, kb=FakeKB(tmp_path)).answer(Q, audiences=caller)
    assert answer.text.startswith("tuned")  # ... and the adapter really answers


def test_a_key_stored_before_the_fix_with_a_capital_label_is_read_normalised(tmp_path):
    store = KeyStore.for_kb(tmp_path)
    key = store.create("old", ["public"]).key
    with sqlite3.connect(store.path) as conn:  # as an older release wrote it: the label as typed
        conn.execute("UPDATE api_keys SET audiences = 'Public' WHERE id = ?", (key.id,))
    (reloaded,) = store.list()
    assert reloaded.caller_audiences == frozenset({"public"})
