"""The raw outcomes an evaluation run collects, one record per question and retrieval setting or variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from slm.types import QAExample


@dataclass(frozen=True)
class RetrievedRef:
    """Where a retrieved or cited chunk comes from (no text: reports show locations, not passages)."""

    chunk_id: str
    doc_id: str
    source: str
    anchor: str | None

    @property
    def location(self) -> str:
        loc = self.source or self.doc_id
        return f"{loc}#{self.anchor}" if self.anchor else loc


@dataclass(frozen=True)
class RetrievalRecord:
    """The ranked chunks one retrieval setting found for one question, and where the gold landed."""

    question_id: str
    setting: str
    ranked: tuple[RetrievedRef, ...]
    source_rank: int | None  # 1-based rank of the first chunk from the gold source
    anchor_rank: int | None  # ... from the gold source AND the gold anchor
    seconds: float
    hidden_hits: int = 0  # hits the audience may not see (a leak; dropped before scoring)


@dataclass(frozen=True)
class AnswerRecord:
    """One variant's answer to one question, scored."""

    question_id: str
    variant: str
    text: str
    abstained: bool
    uncited: bool
    citations: tuple[RetrievedRef, ...]
    f1: float | None  # None where the question has no gold answer (or is unanswerable)
    rouge_l: float | None
    first_token_s: float | None
    total_s: float
    generated_tokens: int
    generation_s: float
    closed_book_text: str | None = None
    closed_book_f1: float | None = None
    closed_book_rouge_l: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class EvalQuestion:
    """A question as this run scores it: answerable may be False when the gold is hidden from the audience."""

    example: QAExample
    answerable: bool
    gold_hidden: bool = False

    @property
    def id(self) -> str:
        return self.example.id or self.example.question


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights answered: base model spec, adapter label/path, and the registry entry if any."""

    model: str
    adapter: str | None = None
    adapter_path: str | None = None
    registry: Mapping[str, Any] = field(default_factory=dict)
