"""Eval leak guard: drop generated questions that duplicate evaluation questions; refuse leaky user data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from slm.errors import EvalLeakError, TrainingError
from slm.text import words
from slm.types import QAExample

# Words that carry no meaning for "is this the same question" (kept short on purpose).
_FILLER = frozenset(
    "a an the is are was were be do does did i me my you your we our it its of to in on at for with and or "
    "can could should would will how what why which when there way".split()
)


normalise = words.normalise  # 'How do I X?' == 'how do i x'; Chinese keeps its characters


def _tokens(text: str) -> frozenset[str]:
    words = normalise(text).split()
    content = frozenset(w for w in words if w not in _FILLER)
    return content or frozenset(words)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class LeakReport:
    kept: tuple[QAExample, ...]
    dropped: tuple[tuple[QAExample, str], ...]  # (example, the eval question it matched)

    @property
    def dropped_count(self) -> int:
        return len(self.dropped)


class LeakGuard:
    """Matches questions against evaluation questions: exact after normalising, or token Jaccard >= threshold."""

    def __init__(self, eval_questions: Iterable[str], threshold: float = 0.8):
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._sets: list[tuple[frozenset[str], str]] = []
        for question in eval_questions:
            if question and question.strip():
                self._exact.setdefault(normalise(question), question)
                self._sets.append((_tokens(question), question))

    def __len__(self) -> int:
        return len(self._sets)

    def match(self, question: str) -> str | None:
        """The evaluation question this one duplicates, or None."""
        hit = self._exact.get(normalise(question))
        if hit is not None:
            return hit
        tokens = _tokens(question)
        for eval_tokens, original in self._sets:
            if jaccard(tokens, eval_tokens) >= self.threshold:
                return original
        return None

    def filter(self, examples: Sequence[QAExample]) -> LeakReport:
        """Generated data: drop (and count) the examples whose question duplicates an eval question."""
        kept, dropped = [], []
        for example in examples:
            hit = self.match(example.question)
            if hit is None:
                kept.append(example)
            else:
                dropped.append((example, hit))
        return LeakReport(tuple(kept), tuple(dropped))

    def refuse_leaks(self, examples: Sequence[QAExample], where: str) -> None:
        """User-supplied data: any eval question in it is an error, not something to fix silently."""
        leaks = [(e.question, hit) for e in examples if (hit := self.match(e.question)) is not None]
        if leaks:
            sample = "; ".join(f"{q!r} ~ {h!r}" for q, h in leaks[:3])
            raise EvalLeakError(
                f"{where}: {len(leaks)} training question(s) duplicate evaluation questions "
                f"(e.g. {sample}); remove them or train without that eval file"
            )


def read_eval_questions(paths: Sequence[Path]) -> list[str]:
    """Questions of JSONL evaluation files (the eval module's reader where present)."""
    questions: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise TrainingError(f"evaluation QA file not found: {path}")
        try:
            from slm.evaluation.dataset import load_qa
        except ImportError:  # the eval module is optional: read the `question` field ourselves
            load_qa = None
        if load_qa is not None:
            examples, _bad = load_qa(path)
            questions.extend(e.question for e in examples)
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("question"), str):
                questions.append(record["question"])
    return questions
