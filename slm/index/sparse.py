"""Sparse index: BM25 (bm25s) over the chunk's indexed text, searchable within a subset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

FOLDER = "bm25"
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


class SparseIndex:
    """`size` rows; `_bm25` is None when no row holds a single term (nothing can match)."""

    def __init__(self, retriever, size: int):
        self._bm25 = retriever
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str]) -> "SparseIndex":
        import bm25s

        tokens = tokenize(texts) if texts else None
        if tokens is None or not tokens.vocab:
            return cls(None, len(texts))
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts))

    def save(self, folder: Path) -> None:
        target = Path(folder) / FOLDER
        target.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(target), show_progress=False)

    @classmethod
    def load(cls, folder: Path, size: int) -> "SparseIndex":
        import bm25s

        target = Path(folder) / FOLDER
        if size == 0 or not (target / "params.index.json").is_file():
            return cls(None, size)
        return cls(bm25s.BM25.load(str(target), mmap=False, show_progress=False), size)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, BM25 scores), only chunks sharing a term with the query; `allowed` masks rows."""
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._bm25 is None or k <= 0:
            return empty
        tokens = tokenize([query], return_ids=False)
        if not tokens or not tokens[0]:
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
