"""Text rules: language detection, tokenisation and stop words per language, the normaliser, messages."""

import re

import pytest

from slm.errors import ConfigError
from slm.text.language import detect_language, normalise_language
from slm.text.messages import answer_language, localised_error, message, preferred_language
from slm.text.words import cjk_bigrams, content_words, fold, normalise, stop_words, terms, tokens, units

ZH = "本文档提供了关于 Debian 发行版和 Debian 项目的常见问题（以及解答！）。如果可能，会提供到其他文档的链接。"
ID = "Dokumen ini berisi pertanyaan yang sering diajukan tentang Debian dan cara menggunakan sistem tersebut."
EN = "This document answers the questions that are asked most often about Debian and how to use it."


@pytest.mark.parametrize(
    "text, expected",
    [
        (ZH, "zh"),
        (ID, "id"),
        (EN, "en"),
        ("怎样安装 apt-get 和 dpkg 软件包？", "zh"),  # Chinese with commands in it
        ("Bagaimana cara memasang paket dengan apt?", "id"),
        ("Berapa hari cuti tahunan?", "id"),  # a question word alone is enough
        ("How do I install a package with apt?", "en"),
        ("これは日本語の文章です。ひらがなとカタカナ。", "other"),
        ("12345 !!!", ""),  # nothing to go on
        ("Labirin Debian", ""),  # a bare heading: no function word of either language
    ],
)
def test_detect_language(text, expected):
    assert detect_language(text) == expected


def test_detect_language_default_and_declared_values():
    assert detect_language("Labirin Debian", default="id") == "id"
    assert [normalise_language(v) for v in ("zh-CN", "zh_TW", "Chinese", "id", "in", "EN", "fr", "", None)] == [
        "zh", "zh", "zh", "id", "id", "en", "other", "", ""]


def test_tokens_are_the_old_english_regex_on_english_text():
    text = "How do I use os.path.join() and __init__ in Python 3.11? Don't panic."
    assert tokens(text) == re.findall(r"[a-z0-9_]+", text.lower())


def test_tokens_split_chinese_into_characters_and_keep_latin_words():
    assert tokens("怎样安装 Debian？") == ["怎", "样", "安", "装", "debian"]
    assert cjk_bigrams("文档是") == ["文档", "档是"] and cjk_bigrams("文") == ["文"]
    assert units("安装 apt 软件包") == ["安装", "apt", "软件", "件包"]


def test_stop_words_per_language_and_content_words():
    assert "the" in stop_words("en") and "yang" in stop_words("id") and "的" in stop_words("zh")
    assert stop_words("") == stop_words("en")
    assert content_words("the package yang dipasang") == {"package", "dipasang"}
    assert content_words("安装软件的方法") == {"安装", "装软", "软件", "件的", "的方", "方法"}


def test_normalise_folds_accents_widths_and_keeps_chinese():
    assert normalise("How do I X?") == normalise("how do i x") == "how do i x"
    assert normalise("Café déjà vu") == "cafe deja vu"
    assert normalise("ＡＢＣ１２") == "abc12"
    assert normalise("怎样安装？") == normalise("怎样 安装") == "怎 样 安 装"
    assert fold("中文") == "中文"


def test_terms_keep_identifiers():
    assert terms("Use os.path.join() or f(x) in __init__") == ["Use", "os.path.join()", "or", "f(x)", "in", "__init__"]


def test_answer_language_follows_the_question_or_the_setting():
    assert answer_language("auto", "退货期限是多久？") == "zh"
    assert answer_language("auto", "Bagaimana cara memasang paket ini?") == "id"
    assert answer_language("auto", "How long is the return period?") == "en"
    assert answer_language("auto", "???") == "en"
    assert answer_language("zh", "How long?") == "zh"
    with pytest.raises(ConfigError, match="answer_language"):
        answer_language("fr", "x")


def test_messages_are_localised_for_every_key():
    from slm.text.messages import MESSAGES

    for key, texts in MESSAGES.items():
        assert set(texts) == {"en", "zh", "id"}, key
    assert message("abstain", "zh") != message("abstain", "en") != message("abstain", "id")
    assert message("abstain", "other") == message("abstain", "en")


def test_preferred_language_and_localised_errors():
    assert preferred_language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert preferred_language("en-US,id;q=0.5") == "en"
    assert preferred_language("fr, id;q=0.4") == "id"
    assert preferred_language(None) == "en"
    assert localised_error("invalid or revoked API key", "invalid_api_key", "en") == "invalid or revoked API key"
    assert localised_error("invalid or revoked API key", "invalid_api_key", "zh").startswith("API 密钥无效")
    assert "invalid or revoked API key" in localised_error("invalid or revoked API key", "invalid_api_key", "id")
    assert localised_error("x", "unknown_code", "zh") == "x"


def test_collapse_spaces_joins_wrapped_chinese_lines_only():
    from slm.text.words import collapse_spaces

    assert collapse_spaces("Debian\n项目的常见问题（以及\n解答！）。") == "Debian 项目的常见问题（以及解答！）。"
    assert collapse_spaces("two   words\nand  more") == "two words and more"
