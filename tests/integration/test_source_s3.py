"""An S3-compatible bucket as a source, against moto's S3 server on loopback: a prefix listed over several
pages, ETags as fingerprints (only changed objects fetched again), deletions followed, a sidecar object and
key-prefix rules giving audiences, credentials only from the environment, a store that is down."""

import pytest

from slm.kb.connectors.s3 import S3Source, parse_s3_uri
from slm.kb.connectors.spec import SourceSpec
from slm.errors import SourceError
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retraining.changes import ChangeSet, detect_changes
from tests.helpers.kb import TOPICS, kb_settings

pytestmark = pytest.mark.integration

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    # Credentials from the environment, the way a deployment gives them; none is ever written anywhere.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-never-logged")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="docs")
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="docs"):
        for obj in page.get("Contents", ()):
            client.delete_object(Bucket="docs", Key=obj["Key"])
    client.delete_bucket(Bucket="docs")


def page(title, text):
    return f"# {title}\n\n## Overview\n\n{text}\n\n## Details\n\nMore: {text}\n".encode()


def put(client, key, body):
    client.put_object(Bucket="docs", Key=key, Body=body)


def test_parse_s3_uri():
    assert parse_s3_uri("s3://docs/handbook") == ("docs", "handbook/")
    assert parse_s3_uri("s3://docs") == ("docs", "")
    with pytest.raises(SourceError):
        parse_s3_uri("s3:///nobucket")


def test_s3_ingest_change_delete_audiences_and_pagination(s3, endpoint, tmp_path, tiny_embedder_dir, monkeypatch):
    for topic, text in TOPICS.items():
        put(s3, f"handbook/{topic}.md", page(f"About {topic}", text))
    put(s3, "handbook/hr/salaries.md", page("Salaries", "Salary bands are reviewed every March."))
    put(s3, "handbook/board.md", page("Board", "The board meets quarterly in Lisbon."))
    put(s3, "handbook/board.md.meta.yaml", b"audience: [board]\n")
    put(s3, "handbook/logo.bin", b"\x00\x01")
    put(s3, "elsewhere/outside.md", page("Outside", "Not under the prefix."))
    put(s3, "handbook-old/stale.md", page("Stale", "A sibling prefix, not this one."))

    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    settings.access.rules = {"hr/**": ["hr"]}
    spec = SourceSpec("s3://docs/handbook", endpoint_url=endpoint)
    fetched: list[str] = []
    real = S3Source.fetch
    monkeypatch.setattr(S3Source, "fetch", lambda self, item: fetched.append(item.id) or real(self, item))
    monkeypatch.setattr(S3Source, "page_size", 2)  # two keys per listing page: continuation tokens are followed

    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        first = ingest(spec, kb, progress=False)
        ids = {f"{t}.md" for t in TOPICS} | {"hr/salaries.md", "board.md"}
        assert {d.id for d in kb.documents()} == ids and first.failed == ()
        docs = {d.id: d for d in kb.documents()}
        assert tuple(docs["hr/salaries.md"].audiences) == ("hr",)
        assert tuple(docs["board.md"].audiences) == ("board",)
        assert docs["refunds.md"].source == "s3://docs/handbook/refunds.md"
        assert kb.root == "s3://docs/handbook/"

        put(s3, "handbook/refunds.md", page("About refunds", "Refunds now take 45 days."))
        s3.delete_object(Bucket="docs", Key="handbook/shipping.md")
        put(s3, "handbook/parking.md", page("Parking", "Parking permits are issued by facilities."))
        put(s3, "handbook/leave.md", page("About leave", TOPICS["leave"]))  # same bytes, same ETag: no change
        assert detect_changes(spec, kb) == ChangeSet(("parking.md",), ("refunds.md",), ("shipping.md",))
        fetched.clear()
        second = ingest(spec, kb, progress=False)
        assert sorted(fetched) == ["parking.md", "refunds.md"]
        assert (second.added, second.changed, second.deleted) == (1, 1, 1)
        assert any("45 days" in c.text for c in kb.store.chunks_of("refunds.md"))

        # The secret never reaches the KB's metadata or its log.
        dump = "\n".join(f"{k}={kb.store.get_meta(k)}" for k in ("root", "source_spec", "source_state"))
        dump += "\n".join(str(e) for e in kb.store.log_entries())
        assert "testing-secret" not in dump and "testing-key-id" not in dump


def test_s3_store_down_or_missing_bucket_removes_nothing(s3, endpoint, tmp_path, tiny_embedder_dir):
    put(s3, "handbook/refunds.md", page("About refunds", TOPICS["refunds"]))
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(SourceSpec("s3://docs/handbook", endpoint_url=endpoint), kb, progress=False)
        counts = kb.store.counts()
        with pytest.raises(SourceError, match="NoSuchBucket"):
            ingest(SourceSpec("s3://nobucket/x", endpoint_url=endpoint), kb, progress=False)
        with pytest.raises(SourceError, match="cannot list"):
            ingest(SourceSpec("s3://docs/handbook", endpoint_url="http://127.0.0.1:9"), kb, progress=False)
        assert kb.store.counts() == counts
