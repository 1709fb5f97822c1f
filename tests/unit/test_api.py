"""The HTTP API with a fake answerer: OpenAI shapes, citations, keys, models and readiness."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from slm.api.app import create_app
from slm.api.keys import KeyStore
from tests.unit.api_fakes import Factory, FakeRegistry, FakeVersion, make_key, make_settings


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


def _client(settings, factory=None, registry=None):
    factory = factory or Factory()
    app = create_app(settings, answerer_factory=factory, registry=registry)
    client = TestClient(app)
    client.__enter__()
    assert app.state.ctx.host.wait_ready(5)
    return client, factory


@pytest.fixture
def api(settings):
    client, factory = _client(settings)
    yield client, factory, make_key(settings)
    client.__exit__(None, None, None)


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def sse_events(text: str) -> list:
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_completion_has_openai_shape_and_citations(api):
    client, factory, key = api
    r = client.post("/v1/chat/completions", headers=auth(key), json={
        "model": "slm",
        "messages": [{"role": "system", "content": "be nice"},
                     {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "refund window?"}],
        "frequency_penalty": 0.5,  # unknown to us: ignored
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "slm-base"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == "base says refund window? [1]"
    assert message["abstained"] is False
    (citation,) = message["citations"]
    assert citation["marker"] == 1 and citation["location"] == "guide.md#refunds"
    assert citation["section"] == ["Refunds"] and citation["snippet"].startswith("Refunds")
    assert body["usage"]["completion_tokens"] == 5
    call = factory.built[None].calls[-1]
    assert call["question"] == "refund window?"
    assert [(t.role, t.content) for t in call["history"]] == [("user", "hi"), ("assistant", "hello")]
    assert call["audiences"] == frozenset({"customers"})


def test_streaming_sends_chunks_then_citations_then_done(api):
    client, _, key = api
    r = client.post("/v1/chat/completions", headers=auth(key),
                    json={"messages": [{"role": "user", "content": "refund window?"}], "stream": True,
                          "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "base says refund window? [1]"
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["choices"][0]["finish_reason"] == "stop"
    assert final[0]["choices"][0]["delta"]["citations"][0]["chunk_id"] == "guide.md::0000"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_native_answer_returns_citations_flags_and_timings(api):
    client, factory, key = api
    r = client.post("/v1/answer", headers=auth(key), json={
        "question": "refund window?", "conversation": [{"role": "user", "content": "hi"}], "max_tokens": 50})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"].endswith("[1]") and body["abstained"] is False and body["uncited"] is False
    assert body["model"] == "slm-base" and body["base_model"] == "fake-base"
    assert body["citations"][0]["doc_id"] == "guide.md"
    assert body["timings"]["generated_tokens"] == 5 and body["timings"]["queue_ms"] >= 0
    assert factory.built[None].calls[-1]["max_new_tokens"] == 50


def test_missing_bad_and_revoked_keys_get_401(settings, api):
    client, _, key = api
    body = {"messages": [{"role": "user", "content": "q"}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "missing_api_key"
    r = client.post("/v1/chat/completions", json=body, headers=auth("slm-not-a-real-key"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert client.post("/v1/chat/completions", json=body, headers=auth(key)).status_code == 200
    KeyStore.for_kb(settings.kb).revoke("bot")
    assert client.post("/v1/chat/completions", json=body, headers=auth(key)).status_code == 401
    assert client.get("/v1/models", headers=auth(key)).status_code == 401


def test_x_api_key_header_is_accepted(api):
    client, _, key = api
    assert client.get("/v1/models", headers={"X-API-Key": key}).status_code == 200


def test_models_and_access_by_audience(settings):
    registry = FakeRegistry([FakeVersion("v1", ("customers",)), FakeVersion("v2", ("hr",)),
                             FakeVersion("v3", ("customers",), status="rejected"),
                             FakeVersion("v4", ("customers",), base="other/model")], current="v1")
    client, factory = _client(settings, registry=registry)
    try:
        customer, hr, admin = make_key(settings), make_key(settings, "hr", ("hr",)), make_key(settings, "admin", ("*",))
        ids = {m["id"]: m for m in client.get("/v1/models", headers=auth(customer)).json()["data"]}
        assert set(ids) == {"slm:v1", "slm-base"} and ids["slm:v1"]["default"] is True
        assert {m["id"] for m in client.get("/v1/models", headers=auth(admin)).json()["data"]} == \
            {"slm:v1", "slm-base", "slm:v2"}
        ask = lambda key, model: client.post("/v1/chat/completions", headers=auth(key), json={  # noqa: E731
            "model": model, "messages": [{"role": "user", "content": "q"}]})
        r = ask(customer, "slm")
        assert r.status_code == 200 and r.json()["model"] == "slm:v1"
        assert r.json()["choices"][0]["message"]["content"].startswith("v1 says")
        r = ask(customer, "slm:v2")
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
        assert ask(customer, "slm:v3").status_code == 404  # rejected versions are not served
        assert ask(customer, "slm:v4").status_code == 404  # nor adapters of another base model
        assert ask(customer, "gpt-4").status_code == 404
        r = ask(hr, "slm")  # the promoted adapter was trained for customers: hr gets the base model
        assert r.status_code == 200 and r.json()["model"] == "slm-base"
        r = ask(hr, "v2")
        assert r.status_code == 200 and r.json()["model"] == "slm:v2"
        assert factory.built["v2"].calls[-1]["audiences"] == frozenset({"hr"})
        assert ask(admin, "slm:v2").status_code == 200
        assert factory.built["v2"].calls[-1]["audiences"] is None  # a trusted key sees all documents
    finally:
        client.__exit__(None, None, None)


def test_promoted_adapter_is_picked_up_without_restart(settings, monkeypatch):
    monkeypatch.setattr("slm.api.runtime.CHECK_EVERY_S", 0.0)
    registry = FakeRegistry([FakeVersion("v1", ("customers",)), FakeVersion("v2", ("customers",))], current="v1")
    client, _ = _client(settings, registry=registry)
    try:
        key = make_key(settings)
        ask = lambda: client.post("/v1/chat/completions", headers=auth(key),  # noqa: E731
                                  json={"messages": [{"role": "user", "content": "q"}]}).json()["model"]
        assert ask() == "slm:v1"
        registry.current_version = "v2"
        models = set()
        for _ in range(50):  # the switch loads in the background; the old model answers meanwhile
            models.add(ask())
            if "slm:v2" in models:
                break
        assert models <= {"slm:v1", "slm:v2"} and "slm:v2" in models
    finally:
        client.__exit__(None, None, None)


def test_readyz_is_503_until_loaded(settings):
    factory = Factory()
    factory.hold_start = True
    app = create_app(settings, answerer_factory=factory)
    key = make_key(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == 503 and "retry-after" in r.headers
        r = client.post("/v1/chat/completions", headers=auth(key), json={"messages": [{"role": "user", "content": "q"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        factory.release.set()
        assert app.state.ctx.host.wait_ready(5)
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_reports_a_failed_load(settings):
    def broken(adapter):
        raise RuntimeError("weights missing")

    app = create_app(settings, answerer_factory=broken)
    with TestClient(app) as client:
        for _ in range(100):
            if app.state.ctx.host.error:
                break
            import time
            time.sleep(0.02)
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "weights missing" in r.json()["error"]


def test_access_log_is_json_without_question_by_default(settings, api, caplog):
    client, _, key = api
    with caplog.at_level(logging.INFO, logger="slm.api.access"):
        client.post("/v1/chat/completions", headers=auth(key),
                    json={"messages": [{"role": "user", "content": "secret salary question"}]})
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "slm.api.access"]
    (record,) = [r for r in records if r["path"] == "/v1/chat/completions"]
    assert record["status"] == 200 and record["model"] == "slm-base" and record["key_id"].startswith("key_")
    assert record["question_chars"] == len("secret salary question")
    assert "question" not in record and "secret salary" not in json.dumps(records)


def test_access_log_has_question_when_enabled(tmp_path, caplog):
    settings = make_settings(tmp_path, log_questions=True)
    client, _ = _client(settings)
    try:
        key = make_key(settings)
        with caplog.at_level(logging.INFO, logger="slm.api.access"):
            client.post("/v1/answer", headers=auth(key), json={"question": "secret salary question"})
        records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "slm.api.access"]
        assert any(r.get("question") == "secret salary question" for r in records)
    finally:
        client.__exit__(None, None, None)


def test_metrics_count_requests_statuses_and_tokens(api):
    client, _, key = api
    client.post("/v1/chat/completions", headers=auth(key), json={"messages": [{"role": "user", "content": "q"}]})
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]})
    text = client.get("/metrics").text
    assert 'slm_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'slm_http_requests_total{method="POST",route="/v1/chat/completions",status="401"} 1.0' in text
    assert 'slm_generated_tokens_total{model="slm-base"} 4.0' in text  # "base says q [1]"
    assert 'slm_errors_total{kind="401"} 1.0' in text
    assert "slm_http_request_duration_seconds_bucket" in text


def test_openapi_documents_citations(api):
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    assert "message.citations" in spec["info"]["description"]
    assert "CitationOut" in spec["components"]["schemas"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/answer", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


def test_cors_is_off_by_default_and_on_when_configured(api, tmp_path):
    client, _, _ = api
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    settings = make_settings(tmp_path / "cors", cors_origins=["https://shop.example"])
    other, _ = _client(settings)
    try:
        r = other.options("/v1/chat/completions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
    finally:
        other.__exit__(None, None, None)


def test_a_new_index_generation_is_picked_up_between_requests(settings, monkeypatch):
    from slm.api.runtime import FactoryLoader, ModelHost

    monkeypatch.setattr("slm.api.runtime.CHECK_EVERY_S", 0.0)

    class ReloadingLoader(FactoryLoader):
        checks = 0
        switched: list = []

        def reload_if_changed(self):
            ReloadingLoader.checks += 1
            return ReloadingLoader.checks == 2

        def index_switched(self, answerers):  # where KbLoader sets the new generation's threshold
            ReloadingLoader.switched.append(list(answerers))

    host = ModelHost(settings, ReloadingLoader(Factory()), registry=None)
    host.load_now()
    for _ in range(3):
        host.maybe_refresh()
    assert ReloadingLoader.checks == 3 and host.ready and host.default_model.id == "slm-base"
    # only the switch (the second check) told the loader, with the answerer being served
    assert len(ReloadingLoader.switched) == 1 and len(ReloadingLoader.switched[0]) == 1


def test_a_promoted_adapter_of_another_base_or_a_broken_registry_falls_back_to_base(settings):
    class Broken(FakeRegistry):
        def current(self):
            from slm.errors import RegistryError
            raise RegistryError("info.json is unreadable")

    for registry in (FakeRegistry([FakeVersion("v1", ("customers",), base="other/model")], current="v1"),
                     Broken([])):
        client, _ = _client(settings, registry=registry)
        try:
            assert client.get("/readyz").json()["model"] == "slm-base"
        finally:
            client.__exit__(None, None, None)
