"""BM25 over index segments: per-segment postings (term -> rows, term frequencies) scored with statistics of
the whole index's live rows, so an index of several segments ranks exactly as one rebuilt from scratch would."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FOLDER = "postings"
K1 = 1.5  # the Lucene BM25 defaults (what bm25s used before, so scores did not move)
B = 0.75


@dataclass
class Postings:
    """One segment's inverted index: the rows of term `vocab[t]` are rows[ptr[t]:ptr[t+1]], with their tfs."""

    vocab: dict[str, int]
    ptr: np.ndarray  # int64, len(vocab) + 1
    rows: np.ndarray  # int32
    tfs: np.ndarray  # float32
    lengths: np.ndarray  # float32, tokens per row
    languages: list[str]  # per row: the analyser its text had (en | zh | id | ...)

    @property
    def size(self) -> int:
        return len(self.lengths)

    @classmethod
    def build(cls, texts: Sequence[str], languages: Sequence[str] | None = None) -> "Postings":
        """Each text analysed by its language's analyser (slm.kb.index.sparse.analyse; None: all English)."""
        from slm.kb.index.sparse import analyse

        n = len(texts)
        langs = [lang or "en" for lang in languages] if languages is not None else ["en"] * n
        tokens = analyse(list(texts), langs) if n else []
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(tok, len(vocab)) for tok in row] for row in tokens]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        if not vocab:
            return cls({}, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                       lengths.astype(np.float32), langs)
        terms = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        row_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        # One entry per (term, row) with its count: sort by term then row, then run-length count.
        unique, counts = np.unique(terms * n + row_of, return_counts=True)
        term_of, rows = np.divmod(unique, n)
        ptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.add.at(ptr, term_of + 1, 1)
        return cls(vocab, np.cumsum(ptr), rows.astype(np.int32), counts.astype(np.float32),
                   lengths.astype(np.float32), langs)

    def save(self, folder: Path) -> None:
        target = Path(folder) / FOLDER
        target.mkdir(parents=True, exist_ok=True)
        (target / "vocab.json").write_text(json.dumps(self.vocab), encoding="utf-8")
        np.savez(target / "postings.npz", ptr=self.ptr, rows=self.rows, tfs=self.tfs, lengths=self.lengths)
        (target / "languages.json").write_text(json.dumps(self.languages), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "Postings":
        target = Path(folder) / FOLDER
        vocab = json.loads((target / "vocab.json").read_text(encoding="utf-8"))
        languages = json.loads((target / "languages.json").read_text(encoding="utf-8"))
        with np.load(target / "postings.npz") as data:
            return cls(vocab, data["ptr"], data["rows"], data["tfs"], data["lengths"], languages)

    def term(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        t = self.vocab.get(word)
        if t is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        return self.rows[self.ptr[t] : self.ptr[t + 1]], self.tfs[self.ptr[t] : self.ptr[t + 1]]


class SegmentedBM25:
    """BM25 over segments laid end to end (segment i's rows start at `offsets[i]`); `alive` marks the rows
    not deleted since (tombstones): they alone count for N, the average length and document frequencies."""

    def __init__(self, segments: Sequence[Postings], alive: np.ndarray | None = None):
        self.segments = list(segments)
        self.offsets = np.cumsum([0] + [s.size for s in self.segments]).astype(np.int64)
        self.size = int(self.offsets[-1])
        self.alive = alive
        lengths = np.concatenate([s.lengths for s in self.segments]) if self.segments else np.zeros(0, np.float32)
        live = lengths if alive is None else lengths[alive]
        # Rows per language among the live ones: which analysers a query is tried with (sparse.query_tokens).
        languages = [lang for s in self.segments for lang in s.languages]
        self.languages = dict(Counter(lang for lang, ok in zip(languages, alive if alive is not None else
                                                                   itertools.repeat(True)) if ok))
        self._n = len(live)
        self._avgdl = float(live.mean()) if len(live) and live.sum() > 0 else 1.0
        self._norm = (K1 * ((1 - B) + B * lengths / self._avgdl)).astype(np.float32)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, BM25 scores) among rows sharing a term with the query; `allowed` masks rows
        (it should already exclude deleted rows, as LoadedIndex.mask_for does)."""
        from slm.kb.index.sparse import query_tokens

        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.size == 0 or k <= 0 or self._n == 0:
            return empty
        words = query_tokens(query, self.languages)
        if not words:
            return empty
        scores = np.zeros(self.size, dtype=np.float32)
        for word in words:
            parts = []
            for segment, offset in zip(self.segments, self.offsets):
                rows, tfs = segment.term(word)
                if len(rows):
                    parts.append((rows.astype(np.int64) + offset, tfs))
            if not parts:
                continue
            rows = np.concatenate([p[0] for p in parts])
            tfs = np.concatenate([p[1] for p in parts])
            if self.alive is not None:
                keep = self.alive[rows]
                rows, tfs = rows[keep], tfs[keep]
            df = len(rows)
            if df == 0:
                continue
            idf = np.log(1.0 + (self._n - df + 0.5) / (df + 0.5))
            scores[rows] += (idf * tfs / (tfs + self._norm[rows])).astype(np.float32)
        if allowed is not None:
            scores[~allowed] = 0.0
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) == 0:
            return empty
        k = min(k, len(candidates))
        top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        top = top[np.lexsort((top, -scores[top]))]
        return top.astype(np.int64), scores[top]
