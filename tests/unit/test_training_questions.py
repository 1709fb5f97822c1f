"""Synthetic QA: sampling, teacher question filters, corpus-agnostic fallback, extractive grounded answers."""

from __future__ import annotations

from slm.training.leakcheck import normalise
from slm.training.questions import (
    QuestionPolicy, clean_question, extractive_answer, fallback_question, file_sha256, generate_examples,
    question_problem, read_examples, sample_chunks, write_examples,
)
from slm.types import Chunk

TEXT_A = (
    "The for statement in Python differs a bit from what you may be used to in C. "
    "Rather than always iterating over an arithmetic progression of numbers, Python's for statement "
    "iterates over the items of any sequence, in the order that they appear in the sequence. "
    "If you do need to iterate over a sequence of numbers, the built-in function range() comes in handy."
)
TEXT_B = (
    "Employees receive 25 days of annual leave each year. Leave requests are submitted through the HR portal "
    "at least two weeks in advance. Unused leave of up to five days may be carried over to the next year."
)


def _chunk(doc, i, text, section=(), audiences=("employees",)):
    return Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text=text, start=0, end=len(text), section=section,
                 title=doc.split("/")[-1], source=doc, audiences=audiences)


CHUNKS = [
    _chunk("tutorial/controlflow.html", 0, TEXT_A, ("4. More Control Flow Tools", "4.2. for Statements")),
    _chunk("hr/leave.md", 0, TEXT_B, ("Annual leave",)),
    _chunk("faq/general.html", 0, TEXT_B.replace("Employees", "Staff"), ("FAQ",)),
    _chunk("tiny.md", 0, "Too short."),
]


class FakeTeacher:
    name = "fake"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0

    def complete_many(self, batch, *, max_new_tokens=48):
        self.calls += 1
        return [self.replies.pop(0) for _ in batch]


def test_sample_chunks_spreads_over_docs_and_excludes_globs():
    picked, excluded = sample_chunks(CHUNKS, 10, exclude_docs=["faq/*"])
    assert excluded == 1
    assert {c.doc_id for c in picked} == {"tutorial/controlflow.html", "hr/leave.md"}  # short chunk dropped too
    assert sample_chunks(CHUNKS, 10, seed=1) == sample_chunks(CHUNKS, 10, seed=1)
    assert len(sample_chunks(CHUNKS, 1)[0]) == 1


def test_clean_question_takes_the_first_question_and_drops_meta_references():
    assert clean_question("Question: how does the for statement work?\nMore text") == "How does the for statement work?"
    assert clean_question("1. What does the passage say about range()? And more") == \
        "What does the documentation say about range()?"
    assert clean_question("This is not a question.") is None


def test_question_filters():
    policy = QuestionPolicy()
    chunk = CHUNKS[0]
    assert question_problem("How does the for statement iterate over a sequence?", chunk, set(), policy) is None
    assert question_problem("Why?", chunk, set(), policy) == "too short"
    assert question_problem("What is the capital city of France today?", chunk, set(), policy) == "no overlap with the chunk"
    seen = {normalise("How does the for statement iterate over a sequence?")}
    assert question_problem("How does the for statement iterate over a sequence?", chunk, seen, policy) == "duplicate"
    assert question_problem("The for statement iterates over sequences", chunk, set(), policy) == "not a question"


def test_fallback_question_uses_the_heading_and_stays_unique():
    from collections import Counter

    seen: set[str] = set()
    first = fallback_question(CHUNKS[0], seen, Counter(), 1)
    assert first.endswith("for Statements?") and "4.2" not in first  # numbering stripped
    seen.add(normalise(first))
    second = fallback_question(CHUNKS[0], seen, Counter(), 1)
    assert second != first and "for Statements" in second
    no_heading = _chunk("x.md", 0, TEXT_B, section=())
    assert fallback_question(no_heading, set(), Counter(), 1).endswith("?")


def test_extractive_answer_is_a_verbatim_span_that_matches_the_question():
    answer = extractive_answer("How do I iterate over a sequence of numbers?", CHUNKS[0], QuestionPolicy())
    assert "range()" in answer
    assert normalise(answer) in normalise(CHUNKS[0].text)
    assert len(answer) <= QuestionPolicy().max_answer_chars


def test_generate_examples_with_a_weak_teacher_is_grounded_and_falls_back():
    chunks = CHUNKS[:2]
    teacher = FakeTeacher(["What is the capital of France?", "How many days of annual leave do employees receive?"])
    examples, stats = generate_examples(chunks, teacher, progress=False)
    assert len(examples) == 2
    # the rejected teacher question is replaced by a rule-written one (here from the section heading)
    assert stats.teacher_questions == 1 and sum(stats.rule_questions.values()) + stats.fallback_questions == 1
    assert stats.rejected["no overlap with the chunk"] == 1
    by_gold = {e.gold_chunk_ids[0]: e for e in examples}
    assert by_gold["hr/leave.md::0000"].question == "How many days of annual leave do employees receive?"
    assert "25 days" in by_gold["hr/leave.md::0000"].answer
    for example in examples:
        chunk = next(c for c in chunks if c.id == example.gold_chunk_ids[0])
        assert normalise(example.answer) in normalise(chunk.text)  # grounded by construction


def test_teacher_answers_are_kept_only_when_supported():
    chunk = CHUNKS[1]
    policy = QuestionPolicy(teacher_answers=True)
    good = FakeTeacher(["How many days of leave do employees get?", "Employees receive 25 days of annual leave each year."])
    examples, stats = generate_examples([chunk], good, policy=policy, progress=False)
    assert examples[0].answer == "Employees receive 25 days of annual leave each year." and stats.teacher_answers == 1
    bad = FakeTeacher(["How many days of leave do employees get?", "Bananas are yellow fruit grown in tropical places."])
    examples, stats = generate_examples([chunk], bad, policy=policy, progress=False)
    assert stats.rejected["teacher answer unsupported"] == 1 and "25 days" in examples[0].answer


def test_data_file_round_trip_and_hash(tmp_path):
    examples, _ = generate_examples(CHUNKS[:2], None, progress=False)
    digest = write_examples(examples, tmp_path / "data.jsonl")
    assert digest == file_sha256(tmp_path / "data.jsonl")
    assert read_examples(tmp_path / "data.jsonl") == examples
    assert write_examples(examples, tmp_path / "again.jsonl") == digest  # reproducible bytes
