"""RAFT examples: a question with its gold chunk among hard (retrieved) distractors in shuffled, numbered
order, the target citing the gold marker; a share with distractors only, whose target is the abstention.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from slm.answering.prompting import ABSTAIN_TEXT, build_messages
from slm.training.leakcheck import normalise
from slm.types import Chunk, QAExample

Retrieve = Callable[[str, int], Sequence[Chunk]]  # (question, k) -> chunks, best first


@dataclass(frozen=True)
class RaftExample:
    """One training example before tokenising: what the model sees and what it must answer."""

    id: str
    question: str
    passages: tuple[Chunk, ...]  # shown in this order, numbered from 1
    gold: int | None  # index into passages; None: the passages do not answer (abstain)
    answer: str  # the grounded answer without its marker

    @property
    def target(self) -> str:
        if self.gold is None:
            return ABSTAIN_TEXT
        return f"{self.answer} [{self.gold + 1}]"

    def messages(self, max_passage_chars: int = 900) -> list[dict[str, str]]:
        return build_messages(self.question, self.passages, max_passage_chars=max_passage_chars)

    def drop_one_distractor(self) -> "RaftExample | None":
        """The same example with one distractor fewer (the last one), markers renumbered; None if none left."""
        removable = [i for i in range(len(self.passages)) if i != self.gold]
        if not removable or (self.gold is None and len(self.passages) <= 1):
            return None
        cut = removable[-1]
        passages = self.passages[:cut] + self.passages[cut + 1 :]
        gold = None if self.gold is None else (self.gold - 1 if cut < self.gold else self.gold)
        return replace(self, passages=passages, gold=gold)


def _overlaps(a: Chunk, b: Chunk) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end


def _contains_answer(chunk: Chunk, answer_key: str) -> bool:
    return bool(answer_key) and answer_key in normalise(chunk.text)


def build_raft_examples(
    examples: Sequence[QAExample],
    chunks_by_id: Mapping[str, Chunk],
    retrieve: Retrieve,
    *,
    distractors: int = 3,
    abstain_share: float = 0.2,
    retrieval_order_share: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[RaftExample], int]:
    """RAFT examples for QA examples whose gold chunk is known; returns (examples, skipped count).

    Distractors are retrieved for the question (hard negatives), never the gold chunk, a chunk
    overlapping it, or any chunk that contains the answer text. Abstain examples show passages
    retrieved for a different question, minus the gold document, so nothing shown answers it.
    Passages are shuffled, except in a `retrieval_order_share` of the examples, which keep the order
    the retriever ranked them in: the order the model sees at serving time, where the first passage
    is usually the best one.
    """
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    abstain_ids = set(rng.sample(range(len(examples)), round(abstain_share * len(examples)))) if examples else set()
    ordered_ids = set(rng.sample(range(len(examples)), round(retrieval_order_share * len(examples)))) \
        if examples and retrieval_order_share > 0 else set()
    out: list[RaftExample] = []
    skipped = 0
    for index, example in enumerate(tqdm(examples, desc="building RAFT examples", unit="ex", disable=not progress)):
        gold_chunk = next((chunks_by_id[c] for c in example.gold_chunk_ids if c in chunks_by_id), None)
        if gold_chunk is None:
            skipped += 1
            continue
        abstain = index in abstain_ids
        answer_key = normalise(example.answer)[:80]
        wanted = distractors + (1 if abstain else 0)
        pool: list[Chunk] = []
        gold_at = None  # how many kept distractors the retriever ranked above the gold chunk
        # Abstain examples show passages retrieved for another question: off-topic for this one. Passages
        # retrieved for the question itself often still answer it from another document (the same topic is
        # covered in several places), which would teach the model to abstain on answerable questions.
        query = example.question
        if abstain and len(examples) > 1:
            other = rng.randrange(len(examples) - 1)
            query = examples[other + (other >= index)].question
        for candidate in retrieve(query, wanted + 8):
            if candidate.id == gold_chunk.id and gold_at is None:
                gold_at = len(pool)
            if candidate.id == gold_chunk.id or _overlaps(candidate, gold_chunk):
                continue
            if _contains_answer(candidate, answer_key) or (abstain and candidate.doc_id == gold_chunk.doc_id):
                continue
            if any(candidate.id == p.id for p in pool):
                continue
            pool.append(candidate)
            if len(pool) >= wanted:
                break
        if abstain and not pool:
            skipped += 1
            continue
        if abstain:
            passages = pool
        elif index in ordered_ids:  # the retriever's order; a gold chunk it did not rank comes last
            at = len(pool) if gold_at is None else min(gold_at, len(pool))
            passages = [*pool[:at], gold_chunk, *pool[at:]]
        else:
            passages = [gold_chunk, *pool]
        if abstain or index not in ordered_ids:
            rng.shuffle(passages)
        gold = None if abstain else passages.index(gold_chunk)
        out.append(
            RaftExample(
                id=example.id or f"ex-{index:05d}",
                question=example.question,
                passages=tuple(passages),
                gold=gold,
                answer=example.answer,
            )
        )
    return out, skipped
