"""A real `slm serve` on loopback, started before `slm retrain` runs: it answers from the new text (citing
the changed document), never cites the deleted one, answers from the added one, serves the newly
promoted adapter and then the rolled-back one — with no restart and no failed request meanwhile.

The server quotes passages (extractive backend) so its citations show which text it read; the pipeline
itself trains and evaluates with the tiny generator."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import pytest
import torch
import yaml

from slm.adapters.registry import Registry
from slm.retraining.history import Outcome
from tests.helpers.retrain_corpus import ADDED, page, retrain_settings, write_pages
from tests.integration.api_server import Server, slm

pytestmark = pytest.mark.integration

REFUND_Q = "Customers may return a product within how many days of purchase for a full refund?"
SHIPPING_Q = "Parcels ship from the Tucson warehouse by ground freight; when do they arrive?"
PARKING_Q = "Where are the visitor spaces of the staff car park and who issues parking permits?"


def _write_config(settings, path):
    data = dataclasses.asdict(settings)
    data["kb"] = str(settings.kb)
    path.write_text(yaml.safe_dump(data))
    return path


def _ask(server, key, question):
    reply = httpx.post(f"{server.url}/v1/answer", json={"question": question},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_running_server_follows_retraining_and_rollback(tmp_path, tiny_lm_dir, tiny_embedder_dir):
    from slm.retraining.run import run_pass

    torch.set_num_threads(1)
    docs = write_pages(tmp_path / "docs")
    settings = retrain_settings(tmp_path / "kb", tiny_embedder_dir, tiny_lm_dir)
    assert run_pass(settings, root=docs, log=lambda m: None).outcome is Outcome.PROMOTED  # v1
    # The traffic loop asks as fast as the server answers (hundreds a minute on a fast machine): the
    # rate limit is raised so that only retraining, not the per-key limit, could fail a request.
    serving = dataclasses.replace(
        settings, generation=dataclasses.replace(settings.generation, backend="extractive"),
        retrieval=dataclasses.replace(settings.retrieval, mode="bm25"),
        serve=dataclasses.replace(settings.serve, rate_limit_per_minute=1_000_000))
    config = _write_config(serving, tmp_path / "serve.yaml")
    key = slm("keys", "create", "--name", "bot", "--audience", "employees", "-c", str(config)).stdout.split()[0]
    server = Server(config, tmp_path / "server.log")
    try:
        server.wait_ready()
        before = _ask(server, key, REFUND_Q)
        assert before["model"] == "slm:v1" and "30 days" in before["answer"]
        assert {c["doc_id"] for c in before["citations"]} == {"refunds.md"}

        # Questions keep coming while the pipeline runs: none may fail.
        failures: list[str] = []
        answered = 0
        stop = threading.Event()

        def traffic() -> None:
            nonlocal answered
            while not stop.is_set():
                for q in (REFUND_Q, SHIPPING_Q, PARKING_Q):
                    r = httpx.post(f"{server.url}/v1/answer", json={"question": q},
                                   headers={"Authorization": f"Bearer {key}"}, timeout=60)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    answered += 1

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        (docs / "refunds.md").write_text(page("Refund policy", "Customers may return a product within 45 days "
                                                              "of purchase for a full refund."), encoding="utf-8")
        (docs / "shipping.md").unlink()
        (docs / ADDED[0]).write_text(page(ADDED[1], ADDED[2]), encoding="utf-8")
        record = run_pass(settings, log=lambda m: None)
        assert record.outcome is Outcome.PROMOTED and record.served_after == "v2"
        assert _wait_for(lambda: _ask(server, key, REFUND_Q)["model"] == "slm:v2"), server.logs()
        stop.set()
        thread.join(120)
        assert not failures and answered > 3, failures[:3]

        after = _ask(server, key, REFUND_Q)
        assert "45 days" in after["answer"] and "30 days" not in after["answer"]
        assert {c["doc_id"] for c in after["citations"]} == {"refunds.md"}
        for q in (SHIPPING_Q, REFUND_Q, PARKING_Q):
            assert "shipping.md" not in {c["doc_id"] for c in _ask(server, key, q)["citations"]}
        parking = _ask(server, key, PARKING_Q)
        assert {c["doc_id"] for c in parking["citations"]} == {"parking.md"} and "level two" in parking["answer"]

        # Rollback is one command and takes effect the same way.
        out = slm("models", "rollback", "-c", str(config))
        assert "now serving v1" in out.stdout
        assert Registry(settings.kb / "adapters").current().version == "v1"
        assert _wait_for(lambda: _ask(server, key, REFUND_Q)["model"] == "slm:v1"), server.logs()
        assert "45 days" in _ask(server, key, REFUND_Q)["answer"]  # the index stays current
    finally:
        server.stop()
