"""When to say "I don't know": the evidence score, detecting a model's own abstention, and a threshold
calibrated on the knowledge base itself (answerable vs unanswerable questions), stored beside it.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from slm.answering.prompting import ABSTAIN_TEXT
from slm.config import DEFAULT_EMBEDDER, MIN_EVIDENCE_DEFAULTS
from slm.text.messages import all_translations
from slm.text.words import CJK_CLASS, has_cjk, stop_words, terms
from slm.types import Chunk, Hit

CALIBRATION_FILE = "calibration.json"

_ABSTAIN_PATTERNS = re.compile(
    r"\b(i\s+(?:do\s*n[o']?t|don't|cannot|can't|can\s*not)\s+know"
    r"|i\s+(?:do\s*n[o']?t|don't)\s+have\s+(?:enough\s+)?information"
    r"|(?:the\s+)?(?:passages?|documents?|context)\s+(?:do(?:es)?\s*n[o']?t|don't|doesn't)\s+"
    r"(?:say|mention|contain|answer|provide|include|cover)"
    r"|not\s+(?:mentioned|answered|covered|found)\s+in\s+the\s+(?:passages?|documents?|context)"
    r"|(?:there\s+is\s+)?no\s+information\s+(?:about|on|in)"
    r"|i\s+(?:cannot|can't|can\s*not|am\s+unable\s+to)\s+(?:answer|find))",
    re.IGNORECASE,
)


def is_abstention(text: str) -> bool:
    """True when an answer declines (ABSTAIN_TEXT or a close variant) rather than answering."""
    flat = " ".join(text.replace("’", "'").split())
    if not flat:
        return True
    if any(text.lower().rstrip(".。") in flat.lower() for text in (ABSTAIN_TEXT, *all_translations("abstain"))):
        return True
    match = _ABSTAIN_PATTERNS.search(flat)
    # A decline at the start, or one that is most of a short reply; not a passing "I don't know why" deep in an answer.
    return bool(match) and (match.start() < 40 or len(flat.split()) <= 25)


def evidence_threshold(min_evidence: float | None, embedder: str = "", calibrated: float | None = None) -> float:
    """The weak-evidence threshold, by one rule: what `slm calibrate` stored for this KB (`calibrated`), else
    `answering.min_evidence` when set, else the measured default of the KB's embedder (config.MIN_EVIDENCE_DEFAULTS;
    an embedder not listed there gets the packaged default's)."""
    if calibrated is not None:
        return calibrated
    if min_evidence is not None:
        return min_evidence
    return MIN_EVIDENCE_DEFAULTS.get(embedder, MIN_EVIDENCE_DEFAULTS[DEFAULT_EMBEDDER])


def evidence_score(hits: Sequence[Hit]) -> float:
    """How strongly the best passage matches the question: the highest dense (cosine) score."""
    dense = [h.dense for h in hits if h.dense is not None]
    if dense:
        return float(max(dense))
    return float(max((h.score for h in hits), default=0.0))


# ---------------------------------------------------------------- calibration


class _Retriever(Protocol):
    def retrieve(self, query: str, k: int = 5, *, audiences: frozenset[str] | None = None, **kw: Any) -> list[Hit]: ...


@dataclass(frozen=True)
class Calibration:
    """A threshold chosen on one split of labelled questions and checked on another (held-out)."""

    threshold: float
    calibration_balanced_accuracy: float
    heldout_balanced_accuracy: float
    heldout_answerable_kept: float  # share of answerable held-out questions that pass the threshold
    heldout_unanswerable_abstained: float  # share of unanswerable held-out questions it stops
    positives: int
    negatives: int
    tuned_count: int = 0
    heldout_count: int = 0
    sources: tuple[str, ...] = ()
    embedder: str = ""
    passages: int = 4
    mode: str = "hybrid"
    seed: int = 0
    created: str = ""
    tuned_question_ids: tuple[str, ...] = field(default=())  # QA-file ids used to tune: exclude them from reports
    rule: str = "balanced-accuracy"  # or "recall>=R": the threshold keeps share R of answerable tuning questions

    def save(self, kb_path: Path) -> Path:
        path = Path(kb_path) / CALIBRATION_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)
        return path


def load_calibration(kb_path: Path) -> Calibration | None:
    path = Path(kb_path) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["sources"] = tuple(data.get("sources", ()))
        data["tuned_question_ids"] = tuple(data.get("tuned_question_ids", ()))
        return Calibration(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        from slm.errors import KnowledgeBaseError

        raise KnowledgeBaseError(f"{path} is damaged ({exc}); rerun `slm calibrate` or delete it") from exc


def balanced_accuracy(positive_scores: Sequence[float], negative_scores: Sequence[float], threshold: float) -> float:
    """Mean of: answerable questions kept (score >= t) and unanswerable ones stopped (score < t)."""
    parts = []
    if positive_scores:
        parts.append(sum(s >= threshold for s in positive_scores) / len(positive_scores))
    if negative_scores:
        parts.append(sum(s < threshold for s in negative_scores) / len(negative_scores))
    return sum(parts) / len(parts) if parts else 0.0


def choose_threshold(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> tuple[float, float]:
    """The threshold with the best balanced accuracy; ties go to the middle of the best run of cut points."""
    if not positive_scores or not negative_scores:
        raise ValueError("calibration needs both answerable and unanswerable questions")
    values = sorted(set(positive_scores) | set(negative_scores))
    cuts = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6]
    scored = [(balanced_accuracy(positive_scores, negative_scores, t), t) for t in cuts]
    best = max(s for s, _ in scored)
    best_cuts = [t for s, t in scored if s >= best - 1e-12]
    # The best cuts may form several runs; take the middle of the widest-spread choice (median cut).
    return best_cuts[len(best_cuts) // 2], best


_NUMBERING_RE = re.compile(r"^\s*(?:[\dIVXivx]+[.)]\s*)+")
_FILLER = frozenset(
    "the a an and or of to in on for is are was were be by with as at this that it its from can may "
    "will not you your we our they their if then else which who what when where how".split()
)


_CJK_PHRASE = re.compile(f"[{CJK_CLASS}]{{4,16}}")  # a clause of Chinese between punctuation marks


def question_from_chunk(chunk: Chunk, rng: random.Random) -> str | None:
    """A question a reader might ask that this chunk answers, without a model, in the chunk's language: from its
    heading by the training questions' rules (slm.training.rule_questions), else about words of its text."""
    from slm.training.rule_questions import from_heading, topic_phrasings

    language = chunk.language if chunk.language in ("zh", "id") else "en"
    heading = _NUMBERING_RE.sub("", chunk.section[-1]).strip(" ¶#") if chunk.section else ""
    pick = rng.randrange(12)  # which of a heading's equally good phrasings
    if heading.endswith(("?", "？")) and (len(heading.split()) >= 3 or has_cjk(heading)):
        return heading
    if heading and len(heading) >= 3 and heading.lower() != chunk.title.lower():
        question = from_heading(heading, pick, language)
        if question:
            return question
    if language == "zh":
        phrases = _CJK_PHRASE.findall(chunk.text)
        if not phrases:
            return None
        return topic_phrasings(rng.choice(phrases), "zh")[0]
    filler = _FILLER | stop_words(language)
    words = [w for w in terms(chunk.text) if w.lower() not in filler and len(w) > 2]
    if len(words) < 6:
        return None
    start = rng.randrange(0, max(1, len(words) - 8))
    keywords = words[start : start + rng.randint(4, 7)]
    return topic_phrasings(" ".join(keywords), language)[0]


def questions_from_chunks(chunks: Iterable[Chunk], n: int, seed: int = 0) -> list[str]:
    """`n` distinct answerable questions from a random sample of chunks (reservoir sampled)."""
    rng = random.Random(seed)
    sample: list[Chunk] = []
    for i, chunk in enumerate(chunks):
        if len(sample) < n * 2:
            sample.append(chunk)
        else:
            j = rng.randrange(i + 1)
            if j < len(sample):
                sample[j] = chunk
    rng.shuffle(sample)
    questions: dict[str, None] = {}
    for chunk in sample:
        q = question_from_chunk(chunk, rng)
        if q:
            questions.setdefault(q)
        if len(questions) >= n:
            break
    return list(questions)


@dataclass(frozen=True)
class LabelledQuestion:
    text: str
    answerable: bool
    id: str | None = None


def split_questions(
    questions: Sequence[LabelledQuestion], heldout_share: float, seed: int
) -> tuple[list[LabelledQuestion], list[LabelledQuestion]]:
    """Stratified split (answerable and unanswerable each) into calibration and held-out lists."""
    rng = random.Random(seed)
    tune: list[LabelledQuestion] = []
    held: list[LabelledQuestion] = []
    for label in (True, False):
        group = [q for q in questions if q.answerable is label]
        rng.shuffle(group)
        cut = len(group) - int(round(len(group) * heldout_share))
        cut = min(max(cut, 1), len(group))
        tune += group[:cut]
        held += group[cut:]
    return tune, held


def calibrate(
    retriever: _Retriever,
    questions: Sequence[LabelledQuestion],
    *,
    passages: int = 4,
    audiences: frozenset[str] | None = None,
    heldout_share: float = 0.5,
    seed: int = 0,
    sources: Sequence[str] = (),
    embedder: str = "",
    mode: str = "hybrid",
    progress: bool = False,
    recall: float | None = None,
) -> Calibration:
    """Score every question's evidence, tune the threshold on one split, report it on the other.

    `recall`: when the unanswerable examples are easy (generic off-topic questions), any cut in the wide
    gap separates them and says nothing about where in-domain unanswerable questions fall; then raise
    the threshold to the highest one that still keeps `recall` of the answerable tuning questions.
    """
    if not any(q.answerable for q in questions) or all(q.answerable for q in questions):
        raise ValueError("calibration needs both answerable and unanswerable questions")
    tune, held = split_questions(questions, heldout_share, seed)
    items = tune + held
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="scoring evidence", unit="q")
    scores = {id(q): evidence_score(retriever.retrieve(q.text, k=passages, audiences=audiences)) for q in items}

    def split_scores(group: list[LabelledQuestion]) -> tuple[list[float], list[float]]:
        return [scores[id(q)] for q in group if q.answerable], [scores[id(q)] for q in group if not q.answerable]

    tune_pos, tune_neg = split_scores(tune)
    threshold, tune_acc = choose_threshold(tune_pos, tune_neg)
    rule = "balanced-accuracy"
    if recall is not None:
        ranked = sorted(tune_pos)
        keep_from = ranked[min(len(ranked) - 1, int((1.0 - recall) * len(ranked)))]
        if keep_from > threshold:
            threshold, rule = keep_from - 1e-6, f"recall>={recall:g}"
            tune_acc = balanced_accuracy(tune_pos, tune_neg, threshold)
    held_pos, held_neg = split_scores(held)
    return Calibration(
        threshold=round(float(threshold), 4),
        calibration_balanced_accuracy=round(tune_acc, 4),
        heldout_balanced_accuracy=round(balanced_accuracy(held_pos, held_neg, threshold), 4),
        heldout_answerable_kept=round(sum(s >= threshold for s in held_pos) / max(1, len(held_pos)), 4),
        heldout_unanswerable_abstained=round(sum(s < threshold for s in held_neg) / max(1, len(held_neg)), 4),
        positives=sum(q.answerable for q in questions),
        negatives=sum(not q.answerable for q in questions),
        tuned_count=len(tune),
        heldout_count=len(held),
        sources=tuple(sources),
        embedder=embedder,
        passages=passages,
        mode=mode,
        seed=seed,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tuned_question_ids=tuple(q.id for q in tune if q.id),
        rule=rule,
    )
