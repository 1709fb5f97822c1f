"""Feedback rows in the KB's SQLite (own table) and their JSONL export, library and CLI."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from slm.errors import KnowledgeBaseError, SlmError
from slm.answering.feedback import FeedbackStore
from slm.types import Answer, Citation

CITATION = Citation(
    marker=1, chunk_id="hr/leave.md::0001", doc_id="hr/leave.md", title="Leave", source="hr/leave.md",
    section=("Leave", "Annual"), anchor="annual", page=None, start=10, end=42, snippet="25 days of annual leave",
)
ANSWER = Answer(question="How much leave?", text="25 days [1].", citations=(CITATION,), model="smol", adapter="v2")


def test_record_and_read_back_keeps_everything(tmp_path):
    store = FeedbackStore.for_kb(tmp_path)
    first = store.record(ANSWER, "up", user="alice", comment="  spot on ")
    refused = Answer(question="q?", text="I don't know from the documents.", abstained=True, model="smol")
    second = store.record(refused, "down", user=None)
    rows = list(store.records())
    assert [r.id for r in rows] == [first, second]
    assert rows[0].user == "alice" and rows[0].rating == "up" and rows[0].comment == "spot on"
    assert rows[0].question == "How much leave?" and rows[0].answer == "25 days [1]."
    assert rows[0].citations == (CITATION,)
    assert (rows[0].model, rows[0].adapter) == ("smol", "v2")
    assert rows[1].abstained is True and rows[1].adapter is None and rows[1].user is None
    assert rows[0].created <= rows[1].created


def test_lives_in_store_sqlite_beside_other_tables(tmp_path):
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        conn.execute("CREATE TABLE documents (id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO documents VALUES ('a.md')")
    FeedbackStore.for_kb(tmp_path).record(ANSWER, "down", user="bob")
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        assert conn.execute("SELECT id FROM documents").fetchall() == [("a.md",)]
        assert conn.execute("SELECT user, rating FROM feedback").fetchall() == [("bob", "down")]


def test_rejects_unknown_rating_and_missing_kb(tmp_path):
    with pytest.raises(SlmError, match="rating"):
        FeedbackStore.for_kb(tmp_path).record(ANSWER, "meh", user="alice")
    with pytest.raises(KnowledgeBaseError, match="slm ingest"):
        FeedbackStore.for_kb(tmp_path / "nowhere")


def test_export_jsonl_one_object_a_line(tmp_path):
    store = FeedbackStore.for_kb(tmp_path)
    store.record(ANSWER, "up", user="alice")
    store.record(ANSWER, "down", user="bob", comment="wrong <b>band</b>")
    out = tmp_path / "fb.jsonl"
    with out.open("w") as handle:
        assert store.export_jsonl(handle) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user"] for line in lines] == ["alice", "bob"]
    assert lines[1]["comment"] == "wrong <b>band</b>"
    assert lines[0]["citations"][0]["chunk_id"] == "hr/leave.md::0001"
    assert lines[0]["citations"][0]["section"] == ["Leave", "Annual"]
    assert lines[0]["model"] == "smol" and lines[0]["adapter"] == "v2"
    assert lines[0]["created_iso"].endswith("Z")


def test_cli_feedback_export(tmp_path):
    from slm.cli.main import app

    FeedbackStore.for_kb(tmp_path).record(ANSWER, "up", user="alice")
    out = tmp_path / "exports" / "feedback.jsonl"
    result = CliRunner().invoke(app, ["feedback", "export", "--kb", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["user"] for line in out.read_text().splitlines()] == ["alice"]
    result = CliRunner().invoke(app, ["feedback", "export", "--kb", str(tmp_path)])
    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[0])["question"] == "How much leave?"
