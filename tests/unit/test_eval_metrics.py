"""Each metric on tiny cases checked by hand, edge cases included."""

import pytest

from slm.evaluation.metrics import (
    abstention_counts,
    abstention_precision,
    abstention_recall,
    chunk_matches,
    first_rank,
    gold_citations,
    hit_at,
    lcs_length,
    normalize_answer,
    percentile,
    reciprocal_rank,
    rouge_l,
    source_matches,
    token_f1,
)
from slm.types import Chunk


def chunk(doc, anchor=None, i=0):
    return Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text="t", start=0, end=1, anchor=anchor, source=doc)


def test_normalize_answer_squad_rules():
    assert normalize_answer("The  Cat, sat on AN apple!") == "cat sat on apple"
    assert normalize_answer("") == ""


def test_token_f1_hand_computed():
    # pred tokens: cat sat mat (3); gold: cat sat on mat today (5); common 3 -> P=1, R=0.6, F1=0.75
    assert token_f1("The cat sat, mat.", "a cat sat on the mat today") == pytest.approx(0.75)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("Cat", "the cat") == 1.0


def test_token_f1_counts_repeated_tokens_once_each():
    # pred: a a a -> articles removed; use non-articles: x x x vs x y -> common 1, P=1/3, R=1/2, F1=0.4
    assert token_f1("x x x", "x y") == pytest.approx(0.4)


def test_token_f1_empty_sides():
    assert token_f1("", "") == 1.0
    assert token_f1("", "something") == 0.0
    assert token_f1("something", "") == 0.0
    assert token_f1("the a an", "x") == 0.0  # only articles -> empty after normalisation


def test_citation_markers_do_not_count_as_words():
    assert token_f1("Lists are mutable [1].", "lists are mutable") == 1.0
    assert token_f1("Lists are mutable [1, 2]", "lists are mutable 1") < 1.0


def test_lcs_and_rouge_l_hand_computed():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert lcs_length([], ["x"]) == 0
    # pred: police killed gunman (3), gold: police kill gunman (3) -> LCS 2 -> P=R=2/3 -> F=2/3
    assert rouge_l("police killed the gunman", "the police kill the gunman") == pytest.approx(2 / 3)
    # order matters for LCS but not for token F1
    assert rouge_l("z y x", "x y z") == pytest.approx(1 / 3)
    assert token_f1("z y x", "x y z") == 1.0


def test_rouge_l_empty_sides():
    assert rouge_l("", "") == 1.0
    assert rouge_l("", "x") == 0.0
    assert rouge_l("y", "x") == 0.0


def test_source_matches_exact_and_under_deeper_root():
    assert source_matches("faq/programming.html", "", "faq/programming.html")
    assert source_matches("python-docs/faq/programming.html", "", "faq/programming.html")
    assert source_matches("x", "faq/programming.html#how-do-i", "faq/programming.html")
    assert not source_matches("faq/programming.html.bak", "", "faq/programming.html")
    assert not source_matches("notfaq/programming.html", "", "faq/programming.html")


def test_ranks_hits_and_mrr():
    ranked = [chunk("a.html"), chunk("gold.html", "other"), chunk("gold.html", "want"), chunk("b.html")]
    assert first_rank(ranked, "gold.html") == 2
    assert first_rank(ranked, "gold.html", "want") == 3
    assert first_rank(ranked, "missing.html") is None
    assert chunk_matches(ranked[2], "gold.html", "want") and not chunk_matches(ranked[1], "gold.html", "want")
    assert (hit_at(2, 1), hit_at(2, 5), hit_at(None, 10)) == (0.0, 1.0, 0.0)
    assert reciprocal_rank(2) == 0.5
    assert reciprocal_rank(None) == 0.0
    assert reciprocal_rank(11, depth=10) == 0.0


def test_gold_citations_and_no_citations():
    assert gold_citations([("gold.html", ""), ("x.html", ""), ("d/gold.html", "")], "gold.html") == (2, 3)
    assert gold_citations([], "gold.html") == (0, 0)


def test_abstention_precision_recall():
    abstained = [True, True, False, False, True]
    answerable = [False, True, False, True, False]
    assert abstention_counts(abstained, answerable) == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert abstention_precision(abstained, answerable) == pytest.approx(2 / 3)
    assert abstention_recall(abstained, answerable) == pytest.approx(2 / 3)


def test_abstention_edge_cases():
    # all abstained: recall perfect, precision = share unanswerable
    assert abstention_recall([True, True], [False, True]) == 1.0
    assert abstention_precision([True, True], [False, True]) == 0.5
    # never abstained: precision undefined; no unanswerable questions: recall undefined
    assert abstention_precision([False, False], [False, True]) is None
    assert abstention_recall([True, False], [True, True]) is None


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
