"""Eval leak guard: generated near-duplicates of eval questions are dropped; leaky user data is refused."""

from __future__ import annotations

import json

import pytest

from slm.errors import EvalLeakError
from slm.training.leakcheck import LeakGuard, normalise, read_eval_questions
from slm.types import QAExample

EVAL = ["How do I make a class iterable?", "What is the difference between a list and a tuple?"]


def test_normalise_ignores_case_punctuation_and_spaces():
    assert normalise("  How do I   make a CLASS iterable?!") == normalise("how do i make a class iterable")


def test_exact_and_near_duplicates_match_different_questions_do_not():
    guard = LeakGuard(EVAL)
    assert guard.match("how do I make a class iterable") == EVAL[0]
    assert guard.match("What's the difference between a tuple and a list?") == EVAL[1]  # reordered words
    assert guard.match("How can I make my class iterable?") == EVAL[0]  # filler words differ only
    assert guard.match("How do I read a file line by line?") is None
    assert guard.match("What is a list?") is None


def test_filter_drops_and_counts():
    guard = LeakGuard(EVAL)
    examples = [QAExample("How do I make a class iterable?", "a"), QAExample("How do I sort a dict?", "b")]
    report = guard.filter(examples)
    assert report.dropped_count == 1
    assert [e.question for e in report.kept] == ["How do I sort a dict?"]
    assert report.dropped[0][1] == EVAL[0]


def test_user_data_with_eval_questions_is_refused_with_the_count():
    guard = LeakGuard(EVAL)
    examples = [QAExample(q, "x") for q in (*EVAL, "Unrelated question about tea?")]
    with pytest.raises(EvalLeakError, match="2 training question"):
        guard.refuse_leaks(examples, "mine.jsonl")
    guard.refuse_leaks([QAExample("Unrelated question about tea?", "x")], "mine.jsonl")  # no error


def test_read_eval_questions_from_jsonl(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps({"question": q, "answer": "a"}) for q in EVAL) + "\n")
    assert read_eval_questions([path]) == EVAL
