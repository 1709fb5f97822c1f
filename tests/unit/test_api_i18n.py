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
