"""`slm retrain` end to end on a small corpus with tiny models: the served answerers (already running,
in-process) follow a changed fact, a deleted and an added document, and a new adapter; a worse adapter
is rejected and the old one keeps serving; exit codes and `--history` through the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from slm.kb.local import KnowledgeBase
from slm.adapters.registry import AdapterInfo, Registry
from slm.retraining.history import Outcome, RetrainHistory
from slm.answering.service import build_live_answerer
from tests.helpers.retrain_corpus import ADDED, answering_adapter, page, retrain_settings, write_pages

REFUND_Q = "Customers may return a product within how many days of purchase for a full refund?"
SHIPPING_Q = "Parcels ship from the Tucson warehouse by ground freight; when do they arrive?"
PARKING_Q = "Where are the visitor spaces of the staff car park and who issues parking permits?"


def _config(settings, path: Path) -> Path:
    data = dataclasses.asdict(settings)
    data["kb"] = str(settings.kb)
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args):
    from slm.cli.main import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _cited(answer) -> set[str]:
    return {c.doc_id for c in answer.citations}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_lm_dir, tiny_embedder_dir):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("retrain")
    docs = write_pages(base / "docs")
    settings = retrain_settings(base / "kb", tiny_embedder_dir, tiny_lm_dir)
    config = _config(settings, base / "slm.yaml")
    return {"base": base, "docs": docs, "settings": settings, "config": config}


def test_documents_change_and_running_answerers_follow(world):
    from slm.retraining.run import run_pass

    settings, docs = world["settings"], world["docs"]
    first = run_pass(settings, root=docs)
    assert first.outcome is Outcome.PROMOTED and first.served_after == "v1" and first.candidate == "v1"
    assert first.metrics_before and first.metrics_after and first.timings["train"] > 0

    # Two "servers" already running: the tiny generator (follows adapters) and the extractive one (cites).
    served_kb = KnowledgeBase.open(settings.kb, settings)
    extractive = dataclasses.replace(settings, generation=dataclasses.replace(settings.generation, backend="extractive"),
                                     retrieval=dataclasses.replace(settings.retrieval, mode="bm25"))
    model = build_live_answerer(settings, kb=served_kb, check_every=0.0)
    quoting = build_live_answerer(extractive, kb=KnowledgeBase.open(settings.kb, extractive), check_every=0.0)
    model.background = False  # switch inline so the test sees it on the next question
    assert model.answer(REFUND_Q).adapter == "v1"
    before = quoting.answer(REFUND_Q)
    assert _cited(before) == {"refunds.md"} and "30 days" in before.citations[0].snippet + before.text

    # A fact changes, a document is deleted, another is added.
    (docs / "refunds.md").write_text(page("Refund policy", "Customers may return a product within 45 days of "
                                                          "purchase for a full refund."), encoding="utf-8")
    (docs / "shipping.md").unlink()
    (docs / ADDED[0]).write_text(page(ADDED[1], ADDED[2]), encoding="utf-8")
    second = run_pass(settings)
    assert second.changes.added == ("parking.md",) and second.changes.modified == ("refunds.md",)
    assert second.changes.deleted == ("shipping.md",)
    assert second.outcome is Outcome.PROMOTED and (second.served_before, second.served_after) == ("v1", "v2")
    assert second.train_chunks > 0 and second.replay_chunks > 0

    after = quoting.answer(REFUND_Q)
    assert _cited(after) == {"refunds.md"} and "45 days" in after.text and "30 days" not in after.text
    for question in (SHIPPING_Q, REFUND_Q, PARKING_Q):
        answer = quoting.answer(question)
        assert "shipping.md" not in _cited(answer) | {h.chunk.doc_id for h in answer.passages}
    assert _cited(quoting.answer(PARKING_Q)) == {"parking.md"}
    assert "level two" in quoting.answer(PARKING_Q).text
    served = model.answer(PARKING_Q)
    assert served.adapter == "v2" and "shipping.md" not in {h.chunk.doc_id for h in served.passages}
    assert not any(c.doc_id == "shipping.md" for c in served_kb.all_chunks())
    assert set(served_kb.index().chunk_ids) == {c.id for c in served_kb.all_chunks()}
    world["model"] = model


def test_a_worse_adapter_is_rejected_and_the_old_one_keeps_serving(world):
    from slm.retraining.run import run_pass

    settings = world["settings"]
    registry = Registry(settings.kb / "adapters")
    # The served model answers (a real adapter steering the tiny model to words); a fresh candidate of the
    # tiny model answers nothing, so on the held-out questions it is measurably worse.
    strong = registry.register(answering_adapter(settings.generation.model, world["base"] / "strong"),
                               AdapterInfo(base=settings.generation.model))
    registry.promote(strong.version)
    model = world["model"]
    assert model.answer(REFUND_Q).adapter == strong.version

    result = _cli("retrain", "--force-train", "-q", "-c", str(world["config"]))
    assert result.exit_code == Outcome.REJECTED.exit_code, result.output
    assert "REJECTED" in result.output and "answer_rate" in result.output
    candidate = registry.versions()[-1]
    assert candidate.status == "rejected" and candidate.version != strong.version
    assert "answer_rate" in " ".join(candidate.info.rejection["reasons"])
    assert candidate.info.rejection["metrics_served"]["answer_rate"] > candidate.metrics["answer_rate"]
    assert registry.current().version == strong.version
    assert model.answer(REFUND_Q).adapter == strong.version  # still serving the old one
    report = Path(candidate.info.rejection["eval_dir"]) / "summary.json"
    assert json.loads(report.read_text())["qa"]["questions"] > 0  # the rejection keeps its report


def test_exit_codes_nothing_and_index_only_and_history(world):
    config = str(world["config"])
    nothing = _cli("retrain", "-q", "-c", config)
    assert nothing.exit_code == Outcome.NOTHING.exit_code, nothing.output
    # A small edit below the thresholds: the index follows, no training.
    settings = world["settings"]
    strict = dataclasses.replace(settings, retrain=dataclasses.replace(settings.retrain, min_changed_share=0.9,
                                                                        min_new_documents=50))
    _config(strict, world["config"])
    (world["docs"] / "leave.md").write_text(page("Annual leave", "Employees accrue thirty days of paid annual leave."),
                                            encoding="utf-8")
    index_only = _cli("retrain", "-q", "-c", config)
    assert index_only.exit_code == Outcome.INDEX.exit_code, index_only.output
    assert "index only" in index_only.output
    with KnowledgeBase.open(settings.kb, settings) as kb:
        assert any("thirty days" in c.text for c in kb.store.chunks_of("leave.md"))
        runs = RetrainHistory(kb.store).runs()
    assert [r.status for r in runs[:5]] == ["index", "nothing", "rejected", "promoted", "promoted"]
    shown = _cli("retrain", "--history", "-c", config)
    assert shown.exit_code == 0 and shown.output.count("PROMOTED") == 2 and "REJECTED" in shown.output
    assert "answer_f1" in shown.output and "timings:" in shown.output
