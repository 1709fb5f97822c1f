"""API error texts in the caller's language (Accept-Language zh-CN / id), English detail kept, codes unchanged."""

from __future__ import annotations

from tests.unit.test_api import _client, auth  # noqa: F401 - the same app and fakes as the API tests
from tests.unit.api_fakes import make_key, make_settings

BODY = {"messages": [{"role": "user", "content": "q"}]}


def test_errors_follow_accept_language(tmp_path):
    settings = make_settings(tmp_path)
    client, _ = _client(settings)
    try:
        english = client.post("/v1/chat/completions", json=BODY).json()["error"]
        chinese = client.post("/v1/chat/completions", json=BODY, headers={"Accept-Language": "zh-CN,zh;q=0.9"}).json()["error"]
        indonesian = client.post("/v1/chat/completions", json=BODY, headers={"Accept-Language": "id-ID"}).json()["error"]
        assert english["code"] == chinese["code"] == indonesian["code"] == "missing_api_key"
        assert chinese["message"].startswith("缺少 API 密钥") and english["message"] in chinese["message"]
        assert indonesian["message"].startswith("Kunci API tidak ada") and english["message"] in indonesian["message"]
        key = make_key(settings)
        bad = client.post("/v1/chat/completions", json={"messages": []}, headers={**auth(key), "Accept-Language": "zh-CN"})
        assert bad.status_code == 422 and bad.json()["error"]["message"].startswith(("请求无效", "没有提出问题"))
    finally:
        client.__exit__(None, None, None)


def _asgi_error(middleware, headers, receive) -> tuple[int, dict]:
    """Drive the body-limit middleware alone: the status and the JSON error it sends."""
    import asyncio
    import json

    sent = []

    async def send(message):
        sent.append(message)

    async def never_called(scope, receive, send):  # the app behind it must not run
        raise AssertionError("the request should have been refused before the app")

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    asyncio.run(middleware(never_called)(scope, receive, send))
    start, body = sent
    return start["status"], json.loads(body["body"])["error"]


def test_body_limit_errors_413_and_408_follow_accept_language():
    import asyncio

    from slm.api.limits import BodySizeLimit

    zh = [(b"accept-language", b"zh-CN,zh;q=0.9")]
    big = [(b"content-length", b"5000")]

    async def slow():
        await asyncio.sleep(5)

    status, error = _asgi_error(lambda app: BodySizeLimit(app, max_bytes=100), zh + big, slow)
    assert status == 413 and error["code"] == "body_too_large"
    assert error["message"].startswith("请求过大（") and "serve.max_body_bytes" in error["message"]
    status, error = _asgi_error(lambda app: BodySizeLimit(app, max_bytes=100, timeout_s=0.05),
                                [(b"accept-language", b"id")], slow)
    assert status == 408 and error["code"] == "body_timeout"
    assert error["message"].startswith("Isi permintaan datang terlalu lambat (") and "serve.body_timeout_s" in error["message"]
    status, error = _asgi_error(lambda app: BodySizeLimit(app, max_bytes=100), big, slow)
    assert status == 413 and error["message"].startswith("request body too large")  # English callers: unchanged


def test_unknown_route_is_localised_too(tmp_path):
    client, _ = _client(make_settings(tmp_path))
    try:
        error = client.get("/v1/nothing", headers={"Accept-Language": "zh-CN"}).json()["error"]
        assert error["code"] == "not_found" and error["message"].startswith("未找到")
    finally:
        client.__exit__(None, None, None)


def test_every_api_error_code_has_its_messages():
    """A code the API sends without a row in the table would reach zh/id callers in English only."""
    import re
    from pathlib import Path

    import slm
    from slm.text.messages import MESSAGES

    root = Path(slm.__file__).parent
    codes = set()
    for path in [*root.joinpath("api").glob("*.py"), root / "errors.py", root / "answering" / "answerer.py"]:
        codes |= set(re.findall(r'code(?:: str)?\s*=\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert {"body_too_large", "body_timeout", "question_too_long", "prompt_too_long"} <= codes
    assert codes <= set(MESSAGES), sorted(codes - set(MESSAGES))
