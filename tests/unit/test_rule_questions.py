"""Rule-written questions: instructions, "You can", definitions and headings become questions; pronouns,
conditions and vague subjects do not."""

import random

import pytest

from slm.training.leakcheck import normalise
from slm.training.questions import QuestionPolicy, extractive_answer, generate_examples
from slm.training.rule_questions import choose, from_heading, from_sentence, rule_questions
from slm.types import Chunk


@pytest.mark.parametrize(
    "sentence, question",
    [
        ("To rotate an API key, open Settings and click Regenerate.", "How do I rotate an API key?"),
        ("You can export the report by clicking Download.", "How can I export the report?"),
        ("Use the key parameter to sort records by a field.", "How do I sort records by a field?"),
        ("A lambda is an anonymous inline function of one expression.", "What is a lambda?"),
        ("Ordered dictionaries are like regular dictionaries with extra methods.", "What are Ordered dictionaries?"),
        ("The str() method returns a readable form of the value.", "What does str() return?"),
    ],
)
def test_sentences_that_become_questions(sentence, question):
    assert from_sentence(sentence)[0] == question


@pytest.mark.parametrize(
    "sentence",
    [
        "If the argument is an absolute path, the previous path is ignored.",
        "It is a good idea to close files.",
        "Note that super() is implemented as part of the binding process.",
        "The file is opened and then closed.",  # "the file": too vague to pick a passage
        "Refunds take ten days.",  # no pattern
    ],
)
def test_sentences_that_do_not(sentence):
    assert from_sentence(sentence) is None


def test_headings():
    assert from_heading("How to reset a password", 0) == "How do I reset a password?"
    assert from_heading("Why is the sky blue?", 0) == "Why is the sky blue?"
    assert from_heading("contextlib — Utilities for with-statement contexts", 0) == "What is contextlib for?"
    assert from_heading("Logging to a file", 1) == "How do I go about logging to a file?"
    assert from_heading("Floating Point Arithmetic: Issues and Limitations", 0) == "What is Floating Point Arithmetic?"
    assert from_heading("Refund policies", 1) == "How do Refund policies work?"
    assert from_heading("word " * 13, 0) is None


def _chunk(text, section=("Keys",)):
    return Chunk(id="c1", doc_id="d", source="d.md", title="Doc", section=section, text=text, start=0, end=len(text))


def test_vague_sentence_questions_are_dropped_and_heading_comes_last():
    chunk = _chunk("You can do this by setting a variable. To rotate an API key, open Settings > Security now.")
    sentences = ["You can do this by setting a variable.", "To rotate an API key, open Settings > Security now."]
    found = rule_questions(chunk, sentences, "Keys")
    assert [q.text for q in found] == ["How do I rotate an API key?", "What is Keys?"]
    assert found[0].sentence == 1 and found[-1].sentence is None
    picked = choose(found, random.Random(0), set(), normalise)
    assert picked.text == "How do I rotate an API key?"
    assert choose(found, random.Random(0), {normalise("How do I rotate an API key?")}, normalise).kind == "heading"


def test_the_answer_starts_at_the_question_sentence_and_stays_in_the_shown_text():
    first = "Billing happens on the first day of each month for every active seat in the workspace."
    second = "To cancel a subscription, open Billing and choose Cancel at the bottom of the page."
    third = "Cancelled subscriptions stay active until the end of the period that was already paid for."
    chunk = _chunk(" ".join([first, second, third, "Hidden tail sentence that the prompt never shows anyone."]))
    policy = QuestionPolicy(max_passage_chars=len(first) + len(second) + len(third) + 2, target_answer_chars=100)
    answer = extractive_answer("How do I cancel a subscription?", chunk, policy, start=1)
    assert answer == f"{second} {third}"
    examples, stats = generate_examples([chunk], None, policy=policy, progress=False)
    assert examples[0].question == "How do I cancel a subscription?"
    assert examples[0].answer.startswith(second) and "Hidden" not in examples[0].answer
    assert stats.rule_questions["instruction"] == 1


def test_strip_heading_keeps_the_section_heading_out_of_answers():
    text = "10.2. Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered the most."
    chunk = _chunk(text, section=("FAQ", "10.2. Why is the sky blue?"))
    answer = extractive_answer("Why is the sky blue?", chunk, QuestionPolicy())  # the default
    assert answer == "Sunlight is scattered by the air, and blue light is scattered the most."
    kept = extractive_answer("Why is the sky blue?", chunk, QuestionPolicy(strip_heading=False))
    assert kept.startswith("Why is the sky blue? Sunlight")  # the v1 recipe: the heading question is quoted too
