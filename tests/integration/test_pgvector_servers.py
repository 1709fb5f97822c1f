"""Two real `slm serve` processes on loopback answering from one PostgreSQL + pgvector database: the replicas'
folder holds only API keys and the audit log (no chunks, no index), and an ingest made after they started
reaches both."""

from __future__ import annotations

import shutil
import sqlite3
import time

import httpx
import pytest
import yaml

from tests.helpers.postgres import PgCluster, find_pg_bin
from tests.integration.api_server import ROOT, Server, slm

pytestmark = pytest.mark.integration

RESTRICTED = ("hr/",)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL with pgvector: `pip install -e .[test]` brings one (the pgserver wheel)")
    base = tmp_path_factory.mktemp("pg-servers")
    corpus = shutil.copytree(ROOT / "corpora" / "tiny", base / "corpus")
    with PgCluster(bin_dir) as pg:
        index = {"backend": "pgvector", "dsn": pg.dsn, "schema": "acme"}
        writer = base / "writer.yaml"  # the ingesting machine: the local KB that publishes
        writer.write_text(yaml.safe_dump({"kb": str(base / "kb"), "index": index}))
        replica = base / "replica.yaml"  # the API machines: the DSN, the embedder, a folder for keys
        replica.write_text(yaml.safe_dump({"kb": str(base / "replica"), "index": index,
                                           "generation": {"backend": "extractive"}}))
        slm("ingest", str(corpus), "-q", "-c", str(writer), timeout=600)
        (base / "replica").mkdir()
        key = slm("keys", "create", "--name", "shop", "--audience", "employees", "-c", str(replica)).stdout.split()[0]
        servers = [Server(replica, base / f"server{i}.log") for i in (1, 2)]
        try:
            for server in servers:
                server.wait_ready(timeout=300)
            yield {"servers": servers, "key": key, "corpus": corpus, "writer": writer, "replica": base / "replica"}
        finally:
            for server in servers:
                server.stop()


def ask(server: Server, key: str, question: str) -> dict:
    reply = httpx.post(f"{server.url}/v1/answer", json={"question": question},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_both_replicas_answer_the_same_from_the_database(replicas):
    question = "Within how many days can a customer return a product for a refund?"
    answers = [ask(s, replicas["key"], question) for s in replicas["servers"]]
    assert answers[0]["answer"] == answers[1]["answer"] and not answers[0]["abstained"]
    assert [c["chunk_id"] for c in answers[0]["citations"]] == [c["chunk_id"] for c in answers[1]["citations"]]
    assert answers[0]["citations"][0]["doc_id"] == "refund-policy.md"
    # The replicas' folder holds keys and their audit log, no chunks and no index.
    assert not (replicas["replica"] / "index").exists()
    with sqlite3.connect(replicas["replica"] / "store.sqlite") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "audit_log" in tables and not tables & {"chunks", "documents", "embeddings"}


def test_replicas_never_cite_restricted_documents(replicas):
    for server in replicas["servers"]:
        for question in ("What are the salary bands for engineers?", "How many days of leave do HR staff get?"):
            answer = ask(server, replicas["key"], question)
            assert not any(c["doc_id"].startswith(RESTRICTED) for c in answer["citations"]), answer


def test_an_ingest_after_start_reaches_both_replicas(replicas):
    question = "When does the zeppelin hangar open on Mondays?"
    (replicas["corpus"] / "hangar.md").write_text(
        "# Zeppelin hangar\n\nThe Acme zeppelin hangar opens at 6 am on Mondays and closes at noon.\n", encoding="utf-8")
    slm("ingest", str(replicas["corpus"]), "-q", "-c", str(replicas["writer"]), timeout=600)
    for server in replicas["servers"]:
        deadline = time.monotonic() + 30
        while True:
            answer = ask(server, replicas["key"], question)
            if answer["citations"] and answer["citations"][0]["doc_id"] == "hangar.md":
                break
            assert time.monotonic() < deadline, f"{server.url} still answers from the old index: {answer}"
            time.sleep(0.5)
        assert "6 am" in answer["answer"]
