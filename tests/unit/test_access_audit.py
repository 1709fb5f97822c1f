"""The audit log (who asked, audiences, documents read and cited; export; off switch) and the
audience-filtered feedback export."""

from __future__ import annotations

import io
import json

import pytest

from slm.access.audit import AuditLog, Caller, audit_log_for, audited
from slm.config import Settings
from slm.answering.feedback import FeedbackStore, visible_to
from slm.types import Answer, Chunk, Citation, Hit


def hit(doc: str, audiences=("public",)) -> Hit:
    return Hit(chunk=Chunk(id=f"{doc}::0000", doc_id=doc, text="t", start=0, end=1, audiences=audiences), score=1.0)


def citation(doc: str, marker: int = 1) -> Citation:
    return Citation(marker=marker, chunk_id=f"{doc}::0000", doc_id=doc, title=doc, source=doc, section=(),
                    anchor=None, page=None, start=0, end=1, snippet="t")


ANSWER = Answer(question="How do refunds work?", text="Within 30 days [1].", citations=(citation("public/returns.md"),),
                passages=(hit("public/returns.md"), hit("public/shipping.md")), model="m", adapter="v2")


def test_records_who_audiences_and_documents(tmp_path):
    log = AuditLog.for_kb(tmp_path)
    log.record(Caller("key:bot", "api", frozenset({"public"})), ANSWER)
    log.record(Caller("alice", "ui", None), Answer(question="x?", text="I don't know", abstained=True, model="m"))
    first, second = list(log.events())
    assert (first.who, first.channel, first.audiences) == ("key:bot", "api", ("public",))
    assert first.cited_docs == ("public/returns.md",) and first.cited_chunks == ("public/returns.md::0000",)
    assert first.passage_docs == ("public/returns.md", "public/shipping.md")
    assert (first.model, first.adapter, first.abstained) == ("m", "v2", False)
    assert first.question is None and first.question_chars == len(ANSWER.question)  # no text by default
    assert second.audiences is None and second.abstained and second.cited_docs == ()
    assert [e.id for e in log.events(who="alice")] == [second.id]
    assert [e.id for e in log.events(doc="public/shipping.md")] == [first.id]
    assert list(log.events(since=second.time + 1)) == []
    out = io.StringIO()
    assert log.export_jsonl(out) == 2
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[0]["who"] == "key:bot" and rows[0]["cited_docs"] == ["public/returns.md"] and rows[1]["audiences"] is None
    assert rows[0]["time_iso"].endswith("Z")


def test_question_text_only_with_log_questions(tmp_path):
    settings = Settings(kb=tmp_path)
    settings.serve.log_questions = True
    log = audit_log_for(settings)
    log.record(Caller("bob", "cli", None), ANSWER)
    assert next(log.events()).question == ANSWER.question


def test_switched_off_or_no_kb_means_no_log(tmp_path):
    settings = Settings(kb=tmp_path)
    settings.access.audit_log = False
    assert audit_log_for(settings) is None
    assert audit_log_for(Settings(kb=tmp_path / "missing")) is None


def test_audited_stream_passes_items_through_and_logs_the_final_answer(tmp_path):
    log = AuditLog.for_kb(tmp_path)
    closed = []

    def stream():
        try:
            yield "Within "
            yield "30 days."
            yield ANSWER
        finally:
            closed.append(True)

    items = list(audited(stream(), log, Caller("key:bot", "api", frozenset({"public"}))))
    assert items == ["Within ", "30 days.", ANSWER]
    assert [e.who for e in log.events()] == ["key:bot"]
    # a caller that stops reading early: nothing logged, the answerer's stream is closed
    partial = audited(stream(), log, Caller("key:gone", "api", None))
    next(partial)
    partial.close()
    assert closed == [True, True] and [e.who for e in log.events()] == ["key:bot"]
    assert list(audited(stream(), None, Caller("x", "api", None)))[-1] is ANSWER  # disabled: still streams


def test_audit_cli_export_and_show(tmp_path):
    from typer.testing import CliRunner

    from slm.cli.main import app

    AuditLog.for_kb(tmp_path).record(Caller("key:bot", "api", frozenset({"public"})), ANSWER)
    runner = CliRunner()
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(app, ["audit", "export", "--kb", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text().splitlines()[0])["who"] == "key:bot"
    shown = runner.invoke(app, ["audit", "show", "--kb", str(tmp_path)])
    assert shown.exit_code == 0 and "key:bot" in shown.stdout and "public/returns.md" in shown.stdout
    bad = runner.invoke(app, ["audit", "show", "--kb", str(tmp_path), "--since", "yesterday"])
    assert bad.exit_code != 0


def test_feedback_export_for_an_audience_drops_answers_that_read_hidden_documents(tmp_path):
    store = FeedbackStore.for_kb(tmp_path)
    store.record(ANSWER, "up", user="alice")
    hr_answer = Answer(question="bonus?", text="The pool is 4.2 million [1].", citations=(citation("hr/bonus.md"),),
                       passages=(hit("hr/bonus.md", ("hr",)),), model="m")
    store.record(hr_answer, "down", user="hannah")
    read_only = Answer(question="pay?", text="No idea.", passages=(hit("hr/bonus.md", ("hr",)),), model="m", uncited=True)
    store.record(read_only, "down", user="hannah")
    labels = {"public/returns.md": ("public",), "public/shipping.md": ("public",), "hr/bonus.md": ("hr",)}

    def export(audiences):
        out = io.StringIO()
        store.export_jsonl(out, visible=visible_to(audiences, labels))
        return [json.loads(line) for line in out.getvalue().splitlines()]

    assert [r["user"] for r in export(frozenset({"public"}))] == ["alice"]
    assert [r["user"] for r in export(frozenset({"public", "hr"}))] == ["alice", "hannah", "hannah"]
    assert len(export(None)) == 3
    assert [r["user"] for r in export(frozenset({"hr"}))] == ["hannah", "hannah"]  # alice's answer read public docs
    del labels["public/shipping.md"]  # a document deleted from the KB since: unknown labels, left out
    assert export(frozenset({"public"})) == []


def test_feedback_export_cli_audience(tmp_path):
    from typer.testing import CliRunner

    from slm.cli.main import app
    from slm.kb.store import Store

    Store(tmp_path / "store.sqlite").close()  # an (empty) KB: no document is known, so nothing passes
    FeedbackStore.for_kb(tmp_path).record(ANSWER, "up", user="alice")
    runner = CliRunner()
    everything = runner.invoke(app, ["feedback", "export", "--kb", str(tmp_path)])
    assert everything.exit_code == 0 and "alice" in everything.stdout
    public = runner.invoke(app, ["feedback", "export", "--kb", str(tmp_path), "--audience", "public"])
    assert public.exit_code == 0 and "alice" not in public.stdout
