"""Per-question metric functions: answer overlap (token F1, ROUGE-L), retrieval ranks, citations, abstention.

Answer overlap is word-level (SQuAD), except against a Chinese gold answer, where it is character-level (each
Han character one token, Latin words inside it whole), as CJK QA benchmarks (CMRC, DuReader) score it.

Every function here is pure and works on one question (or on counts), so each is checked by hand on
tiny cases; aggregation and confidence intervals live in `stats`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

from slm.text.language import detect_language
from slm.text.words import tokens as text_tokens
from slm.types import Chunk

WORD, CHAR = "word", "char"  # the two overlap levels; `overlap_level` picks one per gold answer

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_MARKER_RE = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def strip_markers(text: str) -> str:
    """Remove citation markers such as [1] or [1, 2] so they do not count as answer words."""
    return _MARKER_RE.sub(" ", text)


def overlap_level(gold: str) -> str:
    """CHAR for a Chinese gold answer, else WORD."""
    return CHAR if detect_language(gold) == "zh" else WORD


def answer_tokens(text: str, level: str = WORD) -> list[str]:
    """WORD: SQuAD-normalised words. CHAR: Han characters one by one and Latin words whole (punctuation of
    either script dropped)."""
    if level == CHAR:
        return text_tokens(strip_markers(text))
    return normalize_answer(strip_markers(text)).split()


def token_f1(prediction: str, gold: str, level: str | None = None) -> float:
    """SQuAD token F1 (characters for a Chinese gold: see `overlap_level`); when either side has no tokens,
    1.0 if both are empty else 0.0."""
    level = level or overlap_level(gold)
    pred, ref = answer_tokens(prediction, level), answer_tokens(gold, level)
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, gold: str, level: str | None = None) -> float:
    """ROUGE-L F-measure (beta = 1) over normalised tokens (characters for a Chinese gold); empty sides as in
    `token_f1`."""
    level = level or overlap_level(gold)
    pred, ref = answer_tokens(prediction, level), answer_tokens(gold, level)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- retrieval


def source_matches(doc_id: str, source: str, gold: str) -> bool:
    """Whether a document is the gold source: same id or source, or the same path under a deeper root."""
    gold = gold.strip().lstrip("/")
    for candidate in (doc_id, source):
        candidate = (candidate or "").strip().lstrip("/").split("#", 1)[0]
        if candidate and (candidate == gold or candidate.endswith("/" + gold)):
            return True
    return False


def chunk_matches(chunk: Chunk, gold_source: str, gold_anchor: str | None = None) -> bool:
    """A chunk matches the gold source, and also the gold anchor when one is given."""
    if not source_matches(chunk.doc_id, chunk.source, gold_source):
        return False
    return gold_anchor is None or (chunk.anchor or "") == gold_anchor


def first_rank(chunks: Sequence[Chunk], gold_source: str, gold_anchor: str | None = None) -> int | None:
    """1-based rank of the first matching chunk, or None when none matches."""
    for rank, chunk in enumerate(chunks, start=1):
        if chunk_matches(chunk, gold_source, gold_anchor):
            return rank
    return None


def hit_at(rank: int | None, k: int) -> float:
    return float(rank is not None and rank <= k)


def reciprocal_rank(rank: int | None, depth: int = 10) -> float:
    """1/rank within `depth` (MRR@depth), 0 when the gold is not found that deep."""
    return 0.0 if rank is None or rank > depth else 1.0 / rank


# ---------------------------------------------------------------- citations and abstention


def gold_citations(cited: Iterable[tuple[str, str]], gold_source: str) -> tuple[int, int]:
    """(citations from the gold source, all citations) for (doc_id, source) pairs."""
    pairs = list(cited)
    good = sum(1 for doc_id, source in pairs if source_matches(doc_id, source, gold_source))
    return good, len(pairs)


def safe_ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when undefined (nothing to divide by)."""
    return None if denominator == 0 else numerator / denominator


def abstention_counts(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, int]:
    """Confusion counts with 'abstained' as the positive class."""
    tp = sum(1 for a, ok in zip(abstained, answerable) if a and not ok)
    fp = sum(1 for a, ok in zip(abstained, answerable) if a and ok)
    fn = sum(1 for a, ok in zip(abstained, answerable) if not a and not ok)
    tn = sum(1 for a, ok in zip(abstained, answerable) if not a and ok)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def abstention_precision(abstained: Sequence[bool], answerable: Sequence[bool]) -> float | None:
    """Of the questions the system abstained on, the share that could not be answered."""
    c = abstention_counts(abstained, answerable)
    return safe_ratio(c["tp"], c["tp"] + c["fp"])


def abstention_recall(abstained: Sequence[bool], answerable: Sequence[bool]) -> float | None:
    """Of the questions that could not be answered, the share the system abstained on."""
    c = abstention_counts(abstained, answerable)
    return safe_ratio(c["tp"], c["tp"] + c["fn"])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)
