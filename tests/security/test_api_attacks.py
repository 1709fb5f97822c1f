"""Issue 14's attacks on the HTTP API, replayed against the real server (uvicorn on loopback, configured as
`slm serve` does) with a fake answerer: slow and anonymous clients (8), a lone surrogate (9), a client that
leaves mid-body (10), and questions over the request budget (3, 7)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from slm.api.app import create_app
from tests.security.loopback import LoopbackServer, read_reply, request_head, status_of
from tests.unit.api_fakes import Factory, FakeRegistry, make_key, make_settings

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0


@pytest.fixture
def served(tmp_path):
    settings = make_settings(tmp_path, header_timeout_s=HEADER_TIMEOUT_S, body_timeout_s=BODY_TIMEOUT_S)
    factory = Factory()
    app = create_app(settings, answerer_factory=factory, registry=FakeRegistry([]))
    with LoopbackServer(app, settings.serve) as server:
        yield server, factory, make_key(settings), settings


def _chat(question: str, history: int = 0, turn_chars: int = 10) -> dict:
    messages = []
    for i in range(history):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": "x" * turn_chars})
    return {"messages": messages + [{"role": "user", "content": question}]}


# ---------------------------------------------------------------- 8: slow and anonymous clients


def test_anonymous_incomplete_body_gets_401_before_the_body_is_read(served):
    server, factory, _, _ = served
    with server.connect() as sock:
        sock.sendall(request_head("/v1/chat/completions", length=5000) + b'{"messages": [')  # and never the rest
        reply, closed_after = read_reply(sock, 3)
    assert status_of(reply) == 401, reply[:200]
    assert b"missing_api_key" in reply
    assert closed_after is not None and closed_after < 1.0  # at once, not after the body deadline
    assert factory.built.get(None) is None or not factory.built[None].calls


def test_wrong_key_with_a_body_is_refused_from_the_headers(served):
    server, _, _, _ = served
    with server.connect() as sock:
        sock.sendall(request_head("/v1/answer", key="slm-not-a-key", length=5000))
        reply, closed_after = read_reply(sock, 3)
    assert status_of(reply) == 401 and b"invalid_api_key" in reply
    assert closed_after is not None and closed_after < 1.0


def test_slow_body_gets_408_at_the_body_deadline(served):
    server, factory, key, _ = served
    with server.connect() as sock:
        sock.sendall(request_head("/v1/chat/completions", key=key, length=5000) + b'{"messages": [')
        start = time.monotonic()
        reply, closed_after = read_reply(sock, BODY_TIMEOUT_S + 5)
    assert status_of(reply) == 408, reply[:200]
    assert b"body_timeout" in reply
    assert closed_after is not None and BODY_TIMEOUT_S - 0.2 <= time.monotonic() - start <= BODY_TIMEOUT_S + 3
    assert not factory.built[None].calls


def test_slow_headers_are_closed_at_the_header_deadline(served):
    """20 connections that never finish their request headers (slowloris): all closed, none left open."""
    server, _, key, _ = served
    socks = [server.connect() for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        start = time.monotonic()
        results = [read_reply(sock, HEADER_TIMEOUT_S + 5) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(closed is not None for _, closed in results), "a slow-header connection stayed open"
    assert time.monotonic() - start <= HEADER_TIMEOUT_S + 3
    # the server still answers normal clients
    assert httpx.post(f"{server.url}/v1/answer", json={"question": "refund window?"},
                      headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200


def test_idle_connection_without_a_request_is_closed(served):
    server, _, _, _ = served
    with server.connect() as sock:
        _, closed_after = read_reply(sock, HEADER_TIMEOUT_S + 5)
    assert closed_after is not None and closed_after <= HEADER_TIMEOUT_S + 2


def test_a_keep_alive_connection_still_serves_a_second_request(served):
    """The header deadline restarts after each response: a prompt second request on the same connection works."""
    server, _, key, _ = served
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for _ in range(2):
            assert client.post("/v1/answer", json={"question": "refund window?"}).status_code == 200
            time.sleep(HEADER_TIMEOUT_S / 2)


# ---------------------------------------------------------------- 9: a lone surrogate


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "refund \\ud800 window?"}]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfff"}]}]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"}], "model": "slm\\ud800"}'),
    ("/v1/answer", '{"question": "refund \\ud800 window?"}'),
    ("/v1/answer", '{"question": "ok", "conversation": [{"role": "user", "content": "\\ud83d"}]}'),
])
def test_lone_surrogate_is_a_422_never_a_5xx(served, path, body):
    server, factory, key, _ = served
    r = httpx.post(server.url + path, content=body.encode(), timeout=10,
                   headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]["message"]
    assert "surrogate" in message or "unicode" in message, message
    assert not factory.built[None].calls


# ---------------------------------------------------------------- 10: leaving mid-body


def _requests_by_status(server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("slm_http_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = out.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return out


def test_client_leaving_mid_body_is_counted_499_not_500(served, caplog):
    server, _, key, _ = served
    for _ in range(3):
        with server.connect() as sock:
            sock.sendall(request_head("/v1/chat/completions", key=key, length=5000) + b'{"messages": [')
            time.sleep(0.2)
        # closing the socket here is the disconnect
    deadline = time.monotonic() + 5
    while _requests_by_status(server).get("499", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    counts = _requests_by_status(server)
    assert counts.get("499") == 3, counts
    assert "500" not in counts, counts


# ---------------------------------------------------------------- 3, 7: the request budget


def test_question_over_the_budget_is_422_before_it_takes_a_slot(served):
    server, factory, key, settings = served
    limit = settings.answering.max_question_chars
    assert limit < settings.serve.max_message_chars  # the library's budget, not the API's message limit, refuses
    r = httpx.post(f"{server.url}/v1/chat/completions", json=_chat("x" * (limit + 1)), timeout=10,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "question_too_long"
    assert "answering.max_question_chars" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/v1/answer", json={"question": "y" * (limit + 1)}, timeout=10,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "question_too_long"
    assert not factory.built[None].calls


def test_400k_question_is_refused_even_with_the_api_limits_loosened(tmp_path):
    """The attack of issue 14 (400,000 characters) with every HTTP limit opened up: the shared budget still
    refuses it, fast, and the answerer never sees it."""
    settings = make_settings(tmp_path, max_body_bytes=2_000_000, max_message_chars=1_000_000)
    factory = Factory()
    app = create_app(settings, answerer_factory=factory, registry=FakeRegistry([]))
    with LoopbackServer(app, settings.serve) as server:
        key = make_key(settings)
        body = json.dumps(_chat("how do refunds work? " * 20_000)).encode()
        assert len(body) > 400_000
        start = time.monotonic()
        r = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        elapsed = time.monotonic() - start
    assert r.status_code == 422 and r.json()["error"]["code"] == "question_too_long", r.text
    assert elapsed < 5
    assert not factory.built[None].calls


def test_normal_question_still_answers(served):
    server, factory, key, _ = served
    r = httpx.post(f"{server.url}/v1/chat/completions", json=_chat("refund window?", history=2), timeout=10,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert factory.built[None].calls[-1]["question"] == "refund window?"


def test_connection_count_is_capped(tmp_path):
    """Beyond serve.max_connections, uvicorn answers 503 at once instead of holding more sockets."""
    settings = make_settings(tmp_path, max_connections=3, header_timeout_s=5.0)
    app = create_app(settings, answerer_factory=Factory(), registry=FakeRegistry([]))
    with LoopbackServer(app, settings.serve) as server:
        held = [server.connect() for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                reply, _ = read_reply(extra, 3)
        finally:
            for sock in held:
                sock.close()
    assert status_of(reply) == 503, reply[:200]
