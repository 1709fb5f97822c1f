"""Answer overlap on Chinese gold answers is character-level; English stays SQuAD word-level."""

import pytest

from slm.evaluation.metrics import CHAR, WORD, answer_tokens, overlap_level, rouge_l, token_f1


def test_overlap_level_by_gold_language():
    assert overlap_level("Debian 是一个操作系统。") == CHAR
    assert overlap_level("Debian is an operating system.") == WORD
    assert overlap_level("Debian adalah sistem operasi.") == WORD


def test_char_f1_on_chinese():
    gold = "Debian 是一个自由的操作系统。"
    assert token_f1(gold, gold) == 1.0
    assert answer_tokens("是一个 [1]", CHAR) == ["是", "一", "个"]
    # 6 of the prediction's 6 tokens in the gold's 11: P = 1, R = 6/11
    assert token_f1("自由的操作系", gold) == pytest.approx(2 * (6 / 11) / (1 + 6 / 11))
    # whitespace tokenisation would score this 0 (one "word" each side); characters give credit
    assert token_f1("操作系统是自由的", "自由的操作系统") > 0.8
    assert rouge_l("自由的操作系统", gold) == pytest.approx(2 * 1 * (7 / 11) / (1 + 7 / 11))


def test_english_f1_is_unchanged():
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert rouge_l("cat sat", "the cat sat") == 1.0
