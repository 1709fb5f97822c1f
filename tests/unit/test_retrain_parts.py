"""Retraining components: policy, gate, change detection, history, lock, selection, the live answerer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from slm.config import RetrainSettings
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retraining.changes import ChangeSet, SourceWatcher, changes_since, chunk_counts, detect_changes
from slm.retraining.gate import not_worse
from slm.retraining.history import INTERRUPTED, Outcome, RetrainHistory, RunRecord
from slm.retraining.lock import RetrainLocked, retrain_lock
from slm.retraining.policy import PolicyInput, decide
from slm.retraining.selection import feedback_questions, held_out_set, training_selection
from slm.types import Answer
from tests.helpers.retrain_corpus import ADDED, PAGES, page, write_pages
from tests.helpers.kb import kb_settings


# ------------------------------------------------------------------ policy


def _state(added=(), modified=(), deleted=(), changed=0, total=100, days=None):
    return PolicyInput(ChangeSet(tuple(added), tuple(modified), tuple(deleted)), changed, total, days)


def test_policy_thresholds_schedule_force_and_off():
    cfg = RetrainSettings(min_changed_share=0.10, min_new_documents=3, schedule_days=None)
    assert not decide(_state(), cfg).train
    small = _state(modified=["a.md"], changed=5, total=100)
    below = decide(small, cfg)
    assert not below.train and "index only" in below.reasons[0] and "5.0%" in below.reasons[0]
    assert decide(_state(modified=["a.md"], changed=10, total=100), cfg).train  # exactly the share
    assert decide(_state(added=["a", "b", "c"], changed=3, total=100), cfg).train  # three new documents
    assert decide(small, cfg, force=True).train
    scheduled = RetrainSettings(min_changed_share=0.5, min_new_documents=99, schedule_days=7)
    assert not decide(_state(modified=["a"], changed=1, days=2.0), scheduled).train
    due = decide(_state(modified=["a"], changed=1, days=8.0), scheduled)
    assert due.train and any("schedule" in r for r in due.reasons)
    assert not decide(_state(days=30.0), scheduled).train  # nothing changed: the schedule alone does not train
    off = RetrainSettings(train=False)
    assert not decide(_state(added=list("abcdefg"), changed=90), off).train


# ------------------------------------------------------------------ gate


def test_gate_promotes_unless_worse_beyond_tolerance():
    metrics = ["answer_f1", "uncited_rate", "citation_accuracy"]
    served = {"answer_f1": 0.50, "uncited_rate": 0.20, "citation_accuracy": None}
    same = not_worse({"answer_f1": 0.49, "uncited_rate": 0.21, "citation_accuracy": 0.9}, served,
                     metrics=metrics, tolerance=0.02)
    assert same.promote and "not measured" in same.reasons[-1]
    worse_f1 = not_worse({"answer_f1": 0.40, "uncited_rate": 0.20}, served, metrics=metrics, tolerance=0.02)
    assert not worse_f1.promote and "answer_f1" in worse_f1.reasons[0]
    # uncited_rate is lower-is-better: going up is worse, going down is better
    assert not not_worse({"answer_f1": 0.5, "uncited_rate": 0.40}, served, metrics=metrics, tolerance=0.02).promote
    better = not_worse({"answer_f1": 0.5, "uncited_rate": 0.05}, served, metrics=metrics, tolerance=0.02)
    assert better.promote and any("(better)" in r for r in better.reasons)
    assert not not_worse({}, served, metrics=metrics, tolerance=0.02).promote  # nothing measured: keep the old


# ------------------------------------------------------------------ changes on a real (tiny) KB


@pytest.fixture
def kb(tmp_path, tiny_embedder_dir):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with KnowledgeBase.open(settings.kb, settings, create=True) as opened:
        yield opened


def test_detect_changes_then_ingest_log_since_cutoff(kb, tmp_path):
    docs = write_pages(tmp_path / "docs")
    assert detect_changes(docs, kb) == ChangeSet(added=tuple(sorted(PAGES)))
    ingest(docs, kb, progress=False)
    assert detect_changes(docs, kb).empty
    cutoff = time.time()
    time.sleep(0.01)
    (docs / "refunds.md").write_text(page("Refund policy", "Refunds now take 45 days."), encoding="utf-8")
    (docs / "shipping.md").unlink()
    (docs / ADDED[0]).write_text(page(ADDED[1], ADDED[2]), encoding="utf-8")
    (docs / "laptops.md").touch()  # same bytes: not a change
    found = detect_changes(docs, kb)
    assert found == ChangeSet(("parking.md",), ("refunds.md",), ("shipping.md",))
    ingest(docs, kb, progress=False)
    assert changes_since(kb.store, cutoff) == found
    assert changes_since(kb.store, 0.0).added == tuple(sorted(set(PAGES) - {"shipping.md"} | {"parking.md"}))
    changed, total = chunk_counts(kb.store, found.with_text)
    assert 0 < changed < total


def test_an_image_that_lost_its_text_counts_as_deleted_for_retraining(kb, tmp_path, monkeypatch):
    from tests.helpers.fake_ocr import install_fake_ocr, write_png

    install_fake_ocr(monkeypatch)
    docs = write_pages(tmp_path / "docs")
    write_png(docs / "sign.png", with_text=True)
    write_png(docs / "logo.png", with_text=False)
    ingest(docs, kb, progress=False)
    cutoff = time.time()
    time.sleep(0.01)
    write_png(docs / "sign.png", with_text=False)  # skipped now: what it taught is gone
    ingest(docs, kb, progress=False)
    assert changes_since(kb.store, cutoff) == ChangeSet(deleted=("sign.png",))  # the logo was never there


def test_source_watcher_sees_new_touched_and_removed_files(tmp_path):
    docs = write_pages(tmp_path / "docs")
    watcher = SourceWatcher(docs)
    assert watcher.changed()  # first look
    assert not watcher.changed()
    (docs / "new.md").write_text("x")
    assert watcher.changed() and not watcher.changed()
    (docs / "new.md").unlink()
    assert watcher.changed()


# ------------------------------------------------------------------ history and lock


def test_history_round_trip_interrupted_and_last_decided(kb):
    history = RetrainHistory(kb.store)
    decided = history.save(RunRecord("r1", started=1.0, status="promoted", data_cutoff=5.0, candidate="v1",
                                     changes=ChangeSet(("a.md",)), metrics_after={"answer_f1": 0.5}))
    history.save(RunRecord("r2", started=2.0, status="running", stage="train"))
    assert RetrainHistory(kb.store).runs()[1] == decided  # another connection reads the same report
    stale = history.mark_interrupted()
    assert [r.run_id for r in stale] == ["r2"] and stale[0].status == INTERRUPTED and "train" in stale[0].error
    assert history.last_decided().run_id == "r1"
    assert Outcome.from_status("rejected").exit_code == 5 and Outcome.NOTHING.exit_code == 0
    assert any("a.md" not in line and "1 added" in line for line in decided.lines())
    history.close()


def test_second_run_is_refused_with_the_holders_pid(tmp_path):
    with retrain_lock(tmp_path):
        with pytest.raises(RetrainLocked, match=r"another `slm retrain` is running .*pid \d+"):
            with retrain_lock(tmp_path):
                pass
    with retrain_lock(tmp_path):  # released
        pass


# ------------------------------------------------------------------ selection


def test_selection_changed_plus_replay_and_held_out_with_feedback(kb, tmp_path):
    from slm.answering.feedback import FeedbackStore

    docs = write_pages(tmp_path / "docs")
    ingest(docs, kb, progress=False)
    changes = ChangeSet(modified=("refunds.md",))
    FeedbackStore.for_kb(kb.path).record(Answer(question="Who pays for parking?", text="No idea."), "down", user="alice")
    FeedbackStore.for_kb(kb.path).record(Answer(question="Fine answer?", text="Yes."), "up", user="alice")
    held = held_out_set(kb, changes, tmp_path / "run", qa_file=None, questions=3, feedback=5)
    lines = [json.loads(x) for x in held.path.read_text().splitlines()]
    assert held.from_feedback == 1 and lines[-1]["question"] == "Who pays for parking?" and lines[-1]["answer"] == ""
    assert held.questions == len(lines) and all(x["source"] for x in lines[:-1])
    selection = training_selection(kb, changes, held_out=held.chunk_ids, replay_ratio=1.0, max_chunks=50)
    assert selection.changed and all(c.startswith("refunds.md::") for c in selection.changed)
    assert len(selection.replay) == len(selection.changed)
    assert not any(c.startswith("refunds.md::") for c in selection.replay)
    assert not (selection.chunk_ids & held.chunk_ids)  # held-out chunks are never trained on
    user = tmp_path / "qa.jsonl"
    user.write_text(json.dumps({"question": "How long do refunds take?", "answer": "30 days", "source": "refunds.md"}) + "\n")
    mine = held_out_set(kb, changes, tmp_path / "run2", qa_file=user, questions=3, feedback=0)
    assert mine.user_file and mine.questions == 1 and not mine.chunk_ids
    assert feedback_questions(Path(kb.path), 0) == []


# ------------------------------------------------------------------ the live answerer


class _FakeKB:
    def __init__(self, path):
        self.path = path
        self.reloads = 0

    def reload_if_changed(self):
        self.reloads += 1
        return False


class _Named:
    def __init__(self, adapter):
        self.adapter = adapter

    def stream(self, question, **kwargs):
        yield f"{self.adapter}:"
        yield Answer(question=question, text="ok", adapter=self.adapter)

    def answer(self, question, **kwargs):
        return [x for x in self.stream(question) if isinstance(x, Answer)][-1]


def test_live_answerer_follows_promotion_and_rollback_without_failing_in_flight(tmp_path, tiny_lm_dir):
    from slm.config import Settings
    from slm.adapters.registry import AdapterInfo, Registry
    from slm.answering.service import LiveAnswerer

    registry = Registry(tmp_path / "kb" / "adapters")
    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_text("{}")
    for _ in range(2):
        registry.register(folder, AdapterInfo(base=str(tiny_lm_dir)))
    registry.promote("v1")
    settings = Settings(kb=tmp_path / "kb")
    settings.generation.model = str(tiny_lm_dir)
    kb = _FakeKB(tmp_path / "kb")
    live = LiveAnswerer(settings, kb, check_every=0.0, background=False,
                        build=lambda adapter: _Named(None if adapter == "base" else adapter))
    assert live.answer("q").adapter == "v1" and kb.reloads == 1

    in_flight = live.stream("q")
    assert next(in_flight) == "v1:"  # a question is running on v1 ...
    registry.promote("v2")  # ... when v2 is promoted
    assert live.answer("q").adapter == "v2"
    assert next(in_flight).adapter == "v1"  # the running question finished on the answerer it started with
    registry.rollback()
    assert live.answer("q").adapter == "v1" and live.adapter == "v1"
    registry.rollback()
    assert live.answer("q").adapter is None  # back to the base model


def test_watch_runs_a_pass_when_a_file_changes(tmp_path, tiny_embedder_dir, tiny_lm_dir):
    import threading

    from slm.retraining.run import watch
    from tests.helpers.retrain_corpus import retrain_settings

    docs = write_pages(tmp_path / "docs")
    settings = retrain_settings(tmp_path / "kb", tiny_embedder_dir, tiny_lm_dir)
    settings.retrain.train = False  # index only: this is about the polling
    settings.retrain.watch_interval_s = 0.2
    records: list = []
    thread = threading.Thread(target=lambda: records.extend(
        watch(settings, root=docs, max_passes=2, log=lambda m: None)))
    thread.start()
    deadline = time.monotonic() + 120
    while not (settings.kb / "store.sqlite").exists() or not _runs(settings):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    (docs / "refunds.md").write_text(page("Refund policy", "Refunds now take 45 days."), encoding="utf-8")
    thread.join(120)
    assert [r.status for r in records] == ["index", "index"]
    assert records[0].changes.added == tuple(sorted(PAGES)) and records[1].changes.modified == ("refunds.md",)


def _runs(settings):
    with KnowledgeBase.open(settings.kb, settings) as kb:
        history = RetrainHistory(kb.store)
        try:
            return [r for r in history.runs() if r.finished]
        finally:
            history.close()
