"""Sparse index: BM25 (bm25s) over the chunk's indexed text, searchable within a subset. Each row is analysed
by its chunk's language (English: words, stop words, light stemming; Indonesian: words and stop words; Chinese:
character bigrams, with any Latin words in it analysed as English), and the query by its own language."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from slm.text.language import detect_language
from slm.text.words import CJK_CLASS, cjk_bigrams, has_cjk, stop_words

FOLDER = "bm25"
ANALYSERS_FILE = "analysers.json"  # absent in indexes built before per-language analysis: those stay English
ANALYSER_VERSION = 1
_CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
_SUFFIXES = (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))


def stem_words(words: list[str]) -> list[str]:
    """A deliberately light suffix stripper (plurals, -ing, -ed): enough for BM25 recall, no extra package."""
    return [_stem(w) for w in words]


def _stem(word: str) -> str:
    if word.endswith(("ss", "us", "is")):
        return word
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + repl
    return word


_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_IDENT = re.compile(r"[_.]")


def _prepare(text: str) -> str:
    # `str.join` / `os_path` also match `join` and `path`: keep the whole identifier and its parts.
    extra = " ".join(part for tok in re.findall(r"\w+(?:[_.]\w+)+", text) for part in _IDENT.split(tok))
    return f"{text} {extra}" if extra else text


def tokenize(texts: Sequence[str], *, return_ids: bool = True):
    """English analysis (the analyser every index had before languages): bm25s ids, or token lists."""
    import bm25s

    return bm25s.tokenize(
        [_prepare(t) for t in texts],
        lower=True,
        token_pattern=_TOKEN_PATTERN,
        stopwords="en",
        stemmer=stem_words,
        return_ids=return_ids,
        show_progress=False,
    )


def _indonesian(texts: Sequence[str]) -> list[list[str]]:
    # No stemmer: Indonesian affixes (meN-, ber-, -kan, -an) need a real morphological stemmer; stop words only.
    import bm25s

    return bm25s.tokenize(
        [_prepare(t) for t in texts],
        lower=True,
        token_pattern=_TOKEN_PATTERN,
        stopwords=sorted(stop_words("id")),
        stemmer=None,
        return_ids=False,
        show_progress=False,
    )


def _chinese(texts: Sequence[str]) -> list[list[str]]:
    """Character bigrams of every CJK run, plus the Latin words between runs analysed as English."""
    latin = tokenize([_CJK_RUN.sub(" ", t) for t in texts], return_ids=False)
    out = []
    for text, words in zip(texts, latin):
        grams = [g for run in _CJK_RUN.findall(text) for g in cjk_bigrams(run)]
        out.append(list(words) + grams)
    return out


def analyse(texts: Sequence[str], languages: Sequence[str]) -> list[list[str]]:
    """Token lists, each text by its language's analyser (other or unknown languages: English's). Any text
    with CJK characters in it gets the Chinese one (a command listing in a Chinese page detects as English,
    yet its Chinese words must not become one token per run)."""
    languages = ["zh" if lang != "zh" and has_cjk(text) else lang for text, lang in zip(texts, languages)]
    out: list[list[str]] = [[] for _ in texts]
    for language, analyser in (("zh", _chinese), ("id", _indonesian), (None, None)):
        if language is None:
            idx = [i for i, lang in enumerate(languages) if lang not in ("zh", "id")]
            analyser = lambda part: tokenize(part, return_ids=False)  # noqa: E731
        else:
            idx = [i for i, lang in enumerate(languages) if lang == language]
        if idx:
            for i, toks in zip(idx, analyser([texts[i] for i in idx])):
                out[i] = list(toks)
    return out


def query_tokens(query: str, languages: dict[str, int] | None) -> list[str]:
    """The query analysed as its rows were: by its own language when it says (function words, script),
    else (a short heading such as 'Riwayat hak cipta') by every language the index holds (`languages`: rows
    per language), tokens merged. `languages` None: an index from before languages, all English."""
    if languages is None:
        return list(tokenize([query], return_ids=False)[0])
    language = detect_language(query)
    candidates = [language] if language else sorted(languages) or ["en"]
    merged: dict[str, None] = {}
    for toks in analyse([query] * len(candidates), candidates):
        merged.update(dict.fromkeys(toks))
    return list(merged)


def _ids(token_lists: list[list[str]]):
    from bm25s.tokenization import Tokenized

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(tok, len(vocab)) for tok in toks] for toks in token_lists]
    return Tokenized(ids=ids, vocab=vocab)


class SparseIndex:
    """`size` rows; `_bm25` is None when no row holds a single term (nothing can match)."""

    def __init__(self, retriever, size: int, languages: dict[str, int] | None = None):
        self._bm25 = retriever
        self.size = size
        # Rows per language; None: an index from before languages (every row and query analysed as English).
        self.languages = languages

    @classmethod
    def build(cls, texts: Sequence[str], languages: Sequence[str] | None = None) -> "SparseIndex":
        import bm25s

        languages = list(languages) if languages is not None else ["en"] * len(texts)
        counts = dict(Counter(lang or "en" for lang in languages))
        tokens = _ids(analyse(texts, languages)) if texts else None
        if tokens is None or not tokens.vocab:
            return cls(None, len(texts), counts)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts), counts)

    def save(self, folder: Path) -> None:
        target = Path(folder) / FOLDER
        target.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(target), show_progress=False)
        if self.languages is not None:
            info = {"version": ANALYSER_VERSION, "languages": self.languages}
            (target / ANALYSERS_FILE).write_text(json.dumps(info), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, size: int) -> "SparseIndex":
        import bm25s

        target = Path(folder) / FOLDER
        info = target / ANALYSERS_FILE
        languages = json.loads(info.read_text(encoding="utf-8"))["languages"] if info.is_file() else None
        if size == 0 or not (target / "params.index.json").is_file():
            return cls(None, size, languages)
        return cls(bm25s.BM25.load(str(target), mmap=False, show_progress=False), size, languages)

    def query_tokens(self, query: str) -> list[str]:
        return query_tokens(query, self.languages)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, BM25 scores), only chunks sharing a term with the query; `allowed` masks rows."""
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._bm25 is None or k <= 0:
            return empty
        tokens = [self.query_tokens(query)]
        if not tokens[0]:
            return empty
        mask = None if allowed is None else allowed.astype(np.float32)
        if mask is not None and not mask.any():
            return empty
        positions, scores = self._bm25.retrieve(
            tokens, k=min(k, self.size), show_progress=False, weight_mask=mask, n_threads=0
        )
        positions, scores = positions[0].astype(np.int64), scores[0].astype(np.float32)
        keep = scores > 0
        return positions[keep], scores[keep]
