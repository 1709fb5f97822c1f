"""Reading question files: fields, defaults, bad lines with their numbers, combining files."""

import json

import pytest

from slm.errors import ConfigError
from slm.evaluation.dataset import combine, load_qa, load_qa_file


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fields_and_defaults(tmp_path):
    p = write(tmp_path / "qa.jsonl", [
        json.dumps({"id": "q1", "question": " Why? ", "answer": "Because.", "source": "faq/a.html",
                    "anchor": "why", "extra": [1, 2]}),
        json.dumps({"question": "Unanswerable?", "answerable": False}),
        json.dumps({"question": "Combined?", "source": "faq/b.html#sec"}),
    ])
    examples, bad = load_qa(p)
    assert bad == []
    q1, q2, q3 = examples
    assert (q1.id, q1.question, q1.answer, q1.source, q1.anchor, q1.answerable) == (
        "q1", "Why?", "Because.", "faq/a.html", "why", True)
    assert q2.answerable is False and q2.answer == "" and q2.id == "qa-2"
    assert (q3.source, q3.anchor) == ("faq/b.html", "sec")


def test_bad_lines_reported_with_numbers_not_fatal(tmp_path):
    p = write(tmp_path / "qa.jsonl", [
        json.dumps({"question": "ok 1"}),
        "{not json",
        "",
        json.dumps(["a", "list"]),
        json.dumps({"answer": "no question"}),
        json.dumps({"question": "bad flag", "answerable": "maybe"}),
        json.dumps({"question": "ok 2", "answerable": "false"}),
    ])
    examples, bad = load_qa(p)
    assert [e.question for e in examples] == ["ok 1", "ok 2"]
    assert examples[1].answerable is False
    numbers = [msg.split(":")[1] for msg in bad]
    assert numbers == ["2", "4", "5", "6"]
    assert "not valid JSON" in bad[0] and "question" in bad[2] and "answerable" in bad[3]


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_qa(tmp_path / "nope.jsonl")
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_qa(p)


def test_combine_limits_each_file_and_keeps_ids_unique(tmp_path):
    a = write(tmp_path / "a.jsonl", [json.dumps({"id": "x", "question": f"a{i}"}) for i in range(3)])
    b = write(tmp_path / "b.jsonl", [json.dumps({"id": "x", "question": "b0", "answerable": False})])
    examples, notes = combine([load_qa_file(a), load_qa_file(b)], limit=2)
    assert [e.question for e in examples] == ["a0", "a1", "b0"]
    assert len({e.id for e in examples}) == 3
    assert len(notes) == 2
