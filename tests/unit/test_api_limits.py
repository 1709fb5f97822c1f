"""Limits with a fake answerer: 413 body size, 422 validation, 429 rate limit, 503 full queue, cancel on disconnect."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from slm.api.app import create_app
from slm.api.ratelimit import RateLimiter
from tests.unit.api_fakes import Factory, FakeAnswerer, NoCancelAnswerer, make_key, make_settings

CHAT = "/v1/chat/completions"


def _start(settings, factory=None):
    factory = factory or Factory()
    app = create_app(settings, answerer_factory=factory)
    client = TestClient(app)
    client.__enter__()
    assert app.state.ctx.host.wait_ready(5)
    return app, client, factory


@pytest.fixture
def limited(tmp_path):
    settings = make_settings(tmp_path, max_body_bytes=2000, max_messages=3, max_message_chars=100, max_tokens_limit=64)
    app, client, factory = _start(settings)
    yield client, {"Authorization": f"Bearer {make_key(settings)}"}, factory
    client.__exit__(None, None, None)


def _user(text="q"):
    return {"role": "user", "content": text}


def test_body_over_the_limit_is_413_by_content_length(limited):
    client, headers, factory = limited
    r = client.post(CHAT, headers=headers, json={"messages": [_user("x" * 3000)]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert "2000" in r.json()["error"]["message"]
    assert not factory.built[None].calls


def test_body_over_the_limit_is_413_when_streamed_without_length(limited):
    client, headers, factory = limited
    payload = json.dumps({"messages": [_user("x" * 3000)]}).encode()

    def body():
        for i in range(0, len(payload), 500):
            yield payload[i:i + 500]

    r = client.post(CHAT, headers={**headers, "Content-Type": "application/json"}, content=body())
    assert "content-length" not in r.request.headers  # sent chunked: only the streamed bytes tell
    assert r.status_code == 413
    assert not factory.built[None].calls


def test_small_streamed_body_passes(limited):
    client, headers, _ = limited
    payload = json.dumps({"messages": [_user("hello")]}).encode()
    r = client.post(CHAT, headers={**headers, "Content-Type": "application/json"}, content=iter([payload[:10], payload[10:]]))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body, code, words", [
    ({"messages": [_user()] * 4}, "too_many_messages", "at most 3 messages"),
    ({"messages": [_user("y" * 101)]}, "message_too_long", "at most 100 characters"),
    ({"messages": [_user()], "max_tokens": 65}, "max_tokens_too_large", "at most 64"),
    ({"messages": [_user()], "max_completion_tokens": 65}, "max_tokens_too_large", "at most 64"),
    ({"messages": [_user(), {"role": "assistant", "content": "a"}]}, "no_question", "last message must be the user"),
    ({"messages": []}, "invalid_request", "messages"),
    ({"messages": [_user()], "max_tokens": "12"}, "invalid_request", "max_tokens"),
    ({"messages": [_user()], "stream": "yes"}, "invalid_request", "stream"),
    ({"messages": [{"role": "wizard", "content": "q"}]}, "invalid_request", "role"),
    ({"messages": [{"role": "user", "content": 42}]}, "invalid_request", "content"),
    ({"messages": "q"}, "invalid_request", "messages"),
])
def test_invalid_or_over_limit_requests_are_422_with_a_clear_message(limited, body, code, words):
    client, headers, factory = limited
    r = client.post(CHAT, headers=headers, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert not factory.built[None].calls


def test_native_answer_limits_are_422(limited):
    client, headers, _ = limited
    assert client.post("/v1/answer", headers=headers, json={"question": ""}).status_code == 422
    r = client.post("/v1/answer", headers=headers, json={"question": "q", "conversation": [_user()] * 3})
    assert r.status_code == 422 and "conversation" in r.json()["error"]["message"]
    assert client.post("/v1/answer", headers=headers, json={"question": "q", "max_tokens": 100}).status_code == 422


def test_unknown_fields_are_ignored(limited):
    client, headers, _ = limited
    r = client.post(CHAT, headers=headers, json={"messages": [{**_user(), "weird": 1}], "logit_bias": {"1": 2},
                                                 "seed": 7, "tools": []})
    assert r.status_code == 200


def test_rate_limit_is_per_key_with_retry_after(tmp_path):
    settings = make_settings(tmp_path, rate_limit_per_minute=3)
    app, client, _ = _start(settings)
    try:
        first = {"Authorization": f"Bearer {make_key(settings, 'a')}"}
        second = {"Authorization": f"Bearer {make_key(settings, 'b')}"}
        assert [client.get("/v1/models", headers=first).status_code for _ in range(3)] == [200, 200, 200]
        r = client.post(CHAT, headers=first, json={"messages": [_user()]})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 20
        assert client.get("/v1/models", headers=second).status_code == 200  # other keys are unaffected
    finally:
        client.__exit__(None, None, None)


def test_rate_limiter_refills_over_time():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.acquire("k") == 0.0 for _ in range(60))
    wait = limiter.acquire("k")
    assert wait == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.acquire("k") == 0.0
    assert RateLimiter(0).acquire("k") == 0.0  # 0 disables it


def test_full_queue_is_503_with_retry_after_not_a_hang(tmp_path):
    settings = make_settings(tmp_path, workers=1, queue_size=1)
    gate = threading.Event()
    app, client, factory = _start(settings, Factory(gate=gate))
    headers = {"Authorization": f"Bearer {make_key(settings)}"}
    results = []

    def ask():
        results.append(client.post(CHAT, headers=headers, json={"messages": [_user()]}).status_code)

    try:
        waiting = [threading.Thread(target=ask) for _ in range(2)]  # one generating, one queued
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 5
        while app.state.ctx.queue.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.ctx.queue.depth == 2
        started = time.monotonic()
        r = client.post(CHAT, headers=headers, json={"messages": [_user()]})
        assert r.status_code == 503 and time.monotonic() - started < 2
        assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
        r = client.post(CHAT, headers=headers, json={"messages": [_user()], "stream": True})
        assert r.status_code == 503
        gate.set()
        for t in waiting:
            t.join(10)
        assert results == [200, 200]
        # The slot is released when the generation thread returns, which may be just after the reply left.
        deadline = time.monotonic() + 5
        while app.state.ctx.queue.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.ctx.queue.depth == 0
        assert client.post(CHAT, headers=headers, json={"messages": [_user()]}).status_code == 200
    finally:
        gate.set()
        client.__exit__(None, None, None)


def _drive(app, key: str, body: dict, leave_when) -> list[dict]:
    """Run one request through the ASGI app; the client disconnects once `leave_when(sent)` is true."""
    raw = json.dumps(body).encode()

    async def run():
        sent: list[dict] = []
        request_sent = False

        async def receive():
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            while not leave_when(sent):
                await asyncio.sleep(0.005)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        await asyncio.wait_for(app(scope, receive, send), 10)
        return sent

    return asyncio.run(run())


@pytest.mark.parametrize("answerer_class", [FakeAnswerer, NoCancelAnswerer])
@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_generation(tmp_path, answerer_class, stream):
    settings = make_settings(tmp_path)
    factory = Factory(answerer_class, delay_s=0.05)
    app = create_app(settings, answerer_factory=factory)
    key = make_key(settings)
    app.state.ctx.host.load_now()
    answerer = factory.built[None]
    body = {"messages": [_user("a long question with many words to stream slowly")], "stream": stream}
    if stream:  # leave after the first piece of text arrives
        leave = lambda sent: any(b'"content": "base"' in m.get("body", b"") for m in sent)  # noqa: E731
    else:  # leave while the answer is being generated
        leave = lambda sent: bool(answerer.calls)  # noqa: E731
    sent = _drive(app, key, body, leave)
    assert answerer.cancelled.wait(5), "generation kept running after the client left"
    assert not answerer.finished.is_set()
    assert sent[0]["status"] == (200 if stream else 499)
    if answerer_class is FakeAnswerer:
        assert answerer.calls[-1]["cancel"] is not None
    deadline = time.monotonic() + 5
    while app.state.ctx.queue.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.ctx.queue.depth == 0  # the slot came back
    metrics = app.state.ctx.metrics.render()[0].decode()
    assert "slm_generation_cancelled_total 1.0" in metrics
