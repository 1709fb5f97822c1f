"""The real server on loopback (tiny random models, real KB, keys and registry): the OpenAI client,
streaming, every error status, CLI key revocation and adapter promotion while it runs."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
import yaml

from tests.integration.api_server import ROOT, Server, slm

pytestmark = pytest.mark.integration

RATE_PER_MINUTE = 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_lm_dir, tiny_embedder_dir):
    base = tmp_path_factory.mktemp("api-server")
    kb = base / "kb"
    config = base / "slm.yaml"
    config.write_text(yaml.safe_dump({
        "kb": str(kb),
        "embedder": {"model": str(tiny_embedder_dir)},
        "generation": {"model": str(tiny_lm_dir), "max_new_tokens": 48},
        "answering": {"min_evidence": -1.0},  # random embeddings: never abstain, always generate
        "serve": {"max_body_bytes": 20000, "max_messages": 8, "max_message_chars": 2000, "max_tokens_limit": 64,
                  "rate_limit_per_minute": RATE_PER_MINUTE, "workers": 1, "queue_size": 1},
    }))
    slm("ingest", str(ROOT / "corpora" / "tiny"), "-q", "-c", str(config))
    _register_hr_adapter(kb, tiny_lm_dir, base / "lora")
    server = Server(config, base / "server.log")
    try:
        server.wait_ready()
        yield {"config": config, "kb": kb, "server": server}
    finally:
        server.stop()


def _register_hr_adapter(kb, lm_dir, folder):
    """A real (random) LoRA adapter on the tiny model, recorded as trained on hr documents."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slm.adapters.registry import AdapterInfo, Registry

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(lm_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder)
    Registry(kb / "adapters").register(folder, AdapterInfo(base=str(lm_dir), audiences=("hr",)))


def new_key(setup, name, audiences):
    out = slm("keys", "create", "--name", name, "--audience", audiences, "-c", str(setup["config"]))
    return out.stdout.strip().splitlines()[0]


def client(setup, key, **kwargs):
    return openai.OpenAI(base_url=setup["server"].url + "/v1", api_key=key, max_retries=0, timeout=60, **kwargs)


QUESTION = [{"role": "user", "content": "How many days do customers have to return a product?"}]


def test_openai_client_non_streaming(setup):
    key = new_key(setup, "plain", "employees")
    reply = client(setup, key).chat.completions.create(model="slm", messages=QUESTION)
    assert reply.object == "chat.completion" and reply.model == "slm-base"
    message = reply.choices[0].message
    assert message.role == "assistant" and isinstance(message.content, str) and message.content
    assert isinstance(message.citations, list) and isinstance(message.abstained, bool)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0
    for c in message.citations:
        assert not c["doc_id"].startswith("hr/")


def test_openai_client_streaming(setup):
    key = new_key(setup, "streamer", "employees")
    stream = client(setup, key).chat.completions.create(model="slm", messages=QUESTION, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[-1] is chunks[-1]
    assert isinstance(finals[0].choices[0].delta.citations, list)


def test_raw_stream_ends_with_done(setup):
    key = new_key(setup, "raw", "employees")
    with httpx.stream("POST", setup["server"].url + "/v1/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {key}"}, json={"messages": QUESTION, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")


def test_native_answer(setup):
    key = new_key(setup, "native", "employees")
    r = httpx.post(setup["server"].url + "/v1/answer", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                   json={"question": "What is the refund window?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "slm-base" and body["answer"] and body["timings"]["total_ms"] > 0


def test_401_403_404_422(setup):
    with pytest.raises(openai.AuthenticationError) as err:
        client(setup, "slm-wrong").chat.completions.create(model="slm", messages=QUESTION)
    assert err.value.status_code == 401
    assert "www-authenticate" in err.value.response.headers
    employee = new_key(setup, "employee", "employees")
    assert {m.id for m in client(setup, employee).models.list()} == {"slm-base"}
    with pytest.raises(openai.PermissionDeniedError):  # v1 was trained on hr documents
        client(setup, employee).chat.completions.create(model="slm:v1", messages=QUESTION)
    with pytest.raises(openai.NotFoundError):
        client(setup, employee).chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client(setup, employee).chat.completions.create(model="slm", messages=QUESTION, max_tokens=1000)
    assert "at most 64" in err.value.message
    r = httpx.post(setup["server"].url + "/v1/chat/completions", headers={"Authorization": f"Bearer {employee}"},
                   json={"messages": [{"role": "user", "content": "x" * 2001}]})
    assert r.status_code == 422 and "2000 characters" in r.json()["error"]["message"]


def test_413_by_length_and_by_streamed_body(setup):
    key = new_key(setup, "big", "employees")
    url = setup["server"].url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 30000}]}).encode()
    assert httpx.post(url, headers=headers, content=big).status_code == 413

    def chunked():
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = httpx.post(url, headers=headers, content=chunked())
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_429_with_retry_after(setup):
    key = new_key(setup, "hammer", "employees")
    statuses = []
    with httpx.Client(base_url=setup["server"].url, headers={"Authorization": f"Bearer {key}"}) as http:
        for _ in range(RATE_PER_MINUTE + 5):
            r = http.get("/v1/models")
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                break
    assert statuses[-1] == 429 and statuses.count(200) >= RATE_PER_MINUTE - 2


def test_503_when_the_queue_is_full_never_a_hang(setup):
    keys = [new_key(setup, f"burst{i}", "employees") for i in range(6)]
    barrier = threading.Barrier(len(keys))
    statuses, retry_after = [], []

    def ask(key):
        barrier.wait()
        r = httpx.post(setup["server"].url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"messages": QUESTION}, timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 503:
            retry_after.append(r.headers.get("retry-after"))

    threads = [threading.Thread(target=ask, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(statuses) == len(keys), "a request hung"
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert all(v and int(v) >= 1 for v in retry_after)


def test_key_revoked_by_cli_is_refused_by_the_running_server(setup):
    key = new_key(setup, "temporary", "employees")
    http = httpx.Client(base_url=setup["server"].url, headers={"Authorization": f"Bearer {key}"})
    assert http.get("/v1/models").status_code == 200
    slm("keys", "revoke", "temporary", "-c", str(setup["config"]))
    r = http.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_adapter_access_and_promotion_without_restart(setup):
    from slm.adapters.registry import Registry

    hr = new_key(setup, "hr-team", "hr")
    hr_client = client(setup, hr)
    assert {m.id for m in hr_client.models.list()} == {"slm-base", "slm:v1"}
    reply = hr_client.chat.completions.create(model="slm:v1", messages=QUESTION)
    assert reply.model == "slm:v1"
    Registry(setup["kb"] / "adapters").promote("v1")
    seen = []
    for _ in range(60):  # the server notices within a second and switches once the adapter is loaded
        seen.append(hr_client.chat.completions.create(model="slm", messages=QUESTION).model)
        if seen[-1] == "slm:v1":
            break
    assert seen[-1] == "slm:v1", seen
    employee = client(setup, new_key(setup, "employee2", "employees"))
    assert employee.chat.completions.create(model="slm", messages=QUESTION).model == "slm-base"
    Registry(setup["kb"] / "adapters").rollback()


def test_health_metrics_and_json_logs(setup):
    url = setup["server"].url
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    metrics = httpx.get(url + "/metrics").text
    assert 'route="/v1/chat/completions"' in metrics and "slm_generated_tokens_total" in metrics
    assert 'status="401"' in metrics
    access = []
    for line in setup["server"].logs().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "request":
            access.append(record)
    assert any(r["path"] == "/v1/chat/completions" and r["status"] == 200 for r in access)
    assert not any("return a product" in json.dumps(r) for r in access)  # questions are not logged by default


def test_a_client_that_leaves_stops_generation(setup):
    key = new_key(setup, "impatient", "employees")
    url = setup["server"].url
    with pytest.raises(httpx.TimeoutException):  # generation takes longer than this client waits
        httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"messages": QUESTION}, timeout=0.05)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(url + "/metrics").text
        if "slm_generation_cancelled_total 1.0" in metrics and "slm_generation_queue_depth 0.0" in metrics:
            break
        time.sleep(0.1)
    assert "slm_generation_cancelled_total 1.0" in metrics and "slm_generation_queue_depth 0.0" in metrics
