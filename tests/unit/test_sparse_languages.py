"""BM25 per chunk language: English analysis unchanged, Chinese by character bigrams, Indonesian stop words."""

import numpy as np

from slm.kb.index.sparse import SparseIndex, analyse, tokenize

EN = ["How do I sort a list of dictionaries by a value?", "Use os.path.join() to build paths; the files stay."]
ZH = ["如何安装软件包？使用 apt-get install 命令。", "Debian 的发行版本有稳定版、测试版和不稳定版。", "如何报告软件包的错误？"]
ID = ["Bagaimana cara memasang paket perangkat lunak?", "Rilis Debian yang stabil dan yang sedang diuji."]


def test_english_rows_are_analysed_exactly_as_before():
    assert analyse(EN, ["en", "en"]) == [list(t) for t in tokenize(EN, return_ids=False)]
    assert analyse(EN, ["other", ""]) == [list(t) for t in tokenize(EN, return_ids=False)]


def test_chinese_rows_get_bigrams_and_english_words():
    (tokens,) = analyse([ZH[0]], ["zh"])
    assert {"安装", "软件", "件包", "apt", "get", "install"} <= set(tokens)  # Latin words as English (stemmed)
    assert "如何安装软件包" not in tokens  # never the whole run as one token


def test_indonesian_rows_drop_stop_words_and_are_not_stemmed():
    (tokens,) = analyse([ID[0]], ["id"])
    assert tokens == ["memasang", "paket", "perangkat", "lunak"]  # bagaimana, cara: stop words


def _search(index, query, k=3):
    positions, _ = index.search(query, k)
    return [int(p) for p in positions]


def test_mixed_index_finds_each_language_by_its_own_query(tmp_path):
    texts, languages = EN + ZH + ID, ["en"] * 2 + ["zh"] * 3 + ["id"] * 2
    index = SparseIndex.build(texts, languages)
    index.save(tmp_path)
    index = SparseIndex.load(tmp_path, len(texts))
    assert index.languages == {"en": 2, "zh": 3, "id": 2}
    assert _search(index, "怎样报告错误")[0] == 4
    assert _search(index, "稳定版")[0] == 3
    assert _search(index, "memasang paket")[0] == 5
    assert _search(index, "Rilis stabil")[0] == 6  # too short to detect: analysed as every language present
    assert _search(index, "sorting dictionaries")[0] == 0
    assert _search(index, "paths")[0] == 1


def test_an_index_from_before_languages_analyses_queries_as_english(tmp_path):
    index = SparseIndex.build(EN, ["en", "en"])
    index.save(tmp_path)
    (tmp_path / "bm25" / "analysers.json").unlink()  # what an older slm wrote
    old = SparseIndex.load(tmp_path, 2)
    assert old.languages is None
    assert old.query_tokens("sorting dictionaries") == list(tokenize(["sorting dictionaries"], return_ids=False)[0])
    positions, scores = old.search("sorting dictionaries", 2, allowed=np.array([True, False]))
    assert list(positions) == [0] and scores[0] > 0


def test_cjk_inside_a_row_of_another_language_is_still_split_into_bigrams():
    (tokens,) = analyse(["Run apt-get update, then 安装软件包 with dpkg."], ["en"])
    assert "安装" in tokens and "安装软件包" not in tokens and "dpkg" in tokens
