"""Crash safety of `slm retrain`: SIGKILL the pipeline (a real subprocess) at each stage; the served
adapter and the knowledge base stay consistent, and the next run completes (resuming where it can).
Also: two runs at once are refused with a clear message and exit code 75."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from slm.kb.local import KnowledgeBase
from slm.adapters.registry import Registry
from slm.retraining.history import INTERRUPTED, Outcome, RetrainHistory
from slm.retraining.lock import RetrainLocked
from slm.answering.service import build_live_answerer
from tests.helpers.retrain_corpus import page, retrain_settings, write_pages

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT), **extra)
    return env


def _retrain(config: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "slm.cli.main", "retrain", "-q", "-c", str(config)],
                            cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_lm_dir, tiny_embedder_dir):
    from slm.retraining.run import run_pass

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("retrain-kill")
    docs = write_pages(base / "docs")
    settings = retrain_settings(base / "kb", tiny_embedder_dir, tiny_lm_dir)
    config = base / "slm.yaml"
    data = dataclasses.asdict(settings)
    data["kb"] = str(settings.kb)
    config.write_text(yaml.safe_dump(data))
    assert run_pass(settings, root=docs).outcome is Outcome.PROMOTED
    serving = build_live_answerer(settings, kb=KnowledgeBase.open(settings.kb, settings), check_every=0.0)
    serving.background = False
    return {"docs": docs, "settings": settings, "config": config, "serving": serving}


def _consistent(settings) -> set[str]:
    """The committed index generation exists and holds exactly the store's chunks; returns the doc texts."""
    with KnowledgeBase.open(settings.kb, settings) as kb:
        stored = {c.id for c in kb.all_chunks()}
        assert kb.index() is not None and set(kb.index().chunk_ids) == stored
        assert {d.id for d in kb.documents()} == {cid.split("::")[0] for cid in stored}
        return {c.text for c in kb.all_chunks()}


@pytest.mark.parametrize("stage", ["ingest:built", "train", "evaluate", "promote"])
def test_sigkill_at_a_stage_keeps_serving_the_promoted_version(world, stage):
    from slm.retraining.run import run_pass

    settings, docs = world["settings"], world["docs"]
    registry = Registry(settings.kb / "adapters")
    served = registry.current().version
    fact = f"Refunds are approved by the {stage.replace(':', ' ')} desk within ten days."
    (docs / "refunds.md").write_text(page("Refund policy", fact), encoding="utf-8")

    killed = _retrain(world["config"], SLM_RETRAIN_KILL_AT=stage)
    out, _ = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, out

    # The served version did not move, the running answerer still uses it, the index is consistent.
    assert registry.current().version == served
    assert world["serving"].answer("How are refunds approved?").adapter == served
    texts = _consistent(settings)
    assert any(fact in t for t in texts) == (stage != "ingest:built")  # ingest commits atomically, or not at all
    with KnowledgeBase.open(settings.kb, settings) as kb:
        dead = RetrainHistory(kb.store).runs(1)[0]
    assert dead.status == "running" and dead.stage == stage.split(":")[0]

    # The next run completes, picking up the interrupted one.
    record = run_pass(settings, log=lambda m: None)
    assert record.resumed_from == dead.run_id and record.error is None
    assert any(fact in t for t in _consistent(settings))
    with KnowledgeBase.open(settings.kb, settings) as kb:
        earlier = next(r for r in RetrainHistory(kb.store).runs() if r.run_id == dead.run_id)
    if stage == "promote":
        # the gate had decided: the next run carried the promotion out and found nothing left to do
        assert earlier.status == "promoted" and registry.current().version == earlier.candidate
        assert record.outcome is Outcome.NOTHING
    else:
        assert earlier.status == INTERRUPTED
        assert record.outcome is Outcome.PROMOTED and registry.current().version == record.candidate
        if stage == "evaluate":  # the registered candidate is evaluated, not trained again
            assert record.candidate == earlier.candidate
    assert world["serving"].answer("How are refunds approved?").adapter == registry.current().version


def test_two_runs_at_once_are_refused(world, tmp_path):
    from slm.retraining.run import run_pass

    settings, docs = world["settings"], world["docs"]
    (docs / "leave.md").write_text(page("Annual leave", "Leave requests now go to the team lead."), encoding="utf-8")
    marker = tmp_path / "paused"
    holder = _retrain(world["config"], SLM_RETRAIN_PAUSE_AT="train", SLM_RETRAIN_PAUSE_FILE=str(marker))
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, holder.stdout.read() if holder.poll() else ""
            time.sleep(0.5)
        with pytest.raises(RetrainLocked, match=rf"pid {holder.pid}\b"):
            run_pass(settings)
        second = subprocess.run([sys.executable, "-m", "slm.cli.main", "retrain", "-q", "-c", str(world["config"])],
                                cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 75 and "another `slm retrain` is running" in second.stderr
    finally:
        holder.kill()
        holder.wait(30)
    assert run_pass(settings).outcome in (Outcome.PROMOTED, Outcome.REJECTED)
