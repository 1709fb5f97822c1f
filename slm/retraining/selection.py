"""What a retraining learns from and is judged on: chunks of the changed documents plus a replay sample of
the rest, and a held-out question set (the user's QA file, or generated questions on chunks kept out of
training, plus questions whose answers users rated down)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slm.retraining.changes import ChangeSet
from slm.types import Chunk, QAExample

HELD_OUT_SHARE_OF_CHANGED = 1 / 3  # at most this share of the changed chunks is held out for evaluation


@dataclass(frozen=True)
class HeldOut:
    """The gate's question file and the chunks it was written from (kept out of training)."""

    path: Path
    questions: int
    from_feedback: int
    chunk_ids: frozenset[str]
    user_file: bool


@dataclass(frozen=True)
class TrainingSelection:
    changed: tuple[str, ...]  # chunk ids of added/modified documents
    replay: tuple[str, ...]  # chunk ids of unchanged documents, sampled

    @property
    def chunk_ids(self) -> frozenset[str]:
        return frozenset(self.changed) | frozenset(self.replay)


def _usable(chunks: Sequence[Chunk]) -> list[Chunk]:
    from slm.training.questions import sentences

    return [c for c in chunks if len(c.text.strip()) >= 200 and sentences(c.text)]


def held_out_set(
    kb: Any,
    changes: ChangeSet,
    out_dir: Path,
    *,
    qa_file: Path | None,
    questions: int,
    feedback: int,
    seed: int = 0,
) -> HeldOut:
    """Write `<out_dir>/heldout.jsonl`: the user's QA file as is, or generated questions on held-out chunks
    (a third of them from changed documents at most), then the latest answers rated down."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "heldout.jsonl"
    records: list[dict] = []
    chunk_ids: frozenset[str] = frozenset()
    if qa_file is not None:
        from slm.evaluation.dataset import load_qa_file

        loaded = load_qa_file(qa_file)
        records = [_record(e) for e in loaded.examples]
    else:
        from slm.training.questions import generate_examples

        changed_docs = set(changes.with_text)
        chunks = list(kb.all_chunks())
        changed = _usable([c for c in chunks if c.doc_id in changed_docs])
        rest = _usable([c for c in chunks if c.doc_id not in changed_docs])
        rng = random.Random(seed)
        from_changed = min(len(changed) - 1, int(len(changed) * HELD_OUT_SHARE_OF_CHANGED), questions // 2)
        picked = rng.sample(changed, max(from_changed, 0)) + rng.sample(rest, min(len(rest), questions - max(from_changed, 0)))
        examples, _ = generate_examples(picked, None, progress=False)  # corpus-agnostic questions, extractive answers
        records = [_record(e) | {"id": f"heldout-{i:04d}"} for i, e in enumerate(examples)]
        chunk_ids = frozenset(c.id for c in picked)
    rated_down = feedback_questions(Path(kb.path), feedback)
    records += [_record(e) for e in rated_down]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return HeldOut(path, len(records), len(rated_down), chunk_ids, qa_file is not None)


def feedback_questions(kb_path: Path, limit: int) -> list[QAExample]:
    """The latest questions whose answers users rated down (no gold answer: they weigh on answer rate and
    citations); one per distinct question."""
    if limit <= 0:
        return []
    from slm.answering.feedback import FeedbackStore

    seen: set[str] = set()
    out: list[QAExample] = []
    records = sorted(FeedbackStore.for_kb(kb_path).records(), key=lambda r: -r.created)
    for rec in records:
        key = " ".join(rec.question.lower().split())
        if rec.rating != "down" or key in seen:
            continue
        seen.add(key)
        out.append(QAExample(question=rec.question, answer="", id=f"feedback-{rec.id}"))
        if len(out) >= limit:
            break
    return out


def _record(example: QAExample) -> dict:
    record = {"id": example.id, "question": example.question, "answer": example.answer,
              "answerable": example.answerable}
    if example.source:
        record["source"] = example.source
    if example.anchor:
        record["anchor"] = example.anchor
    return record


def training_selection(
    kb: Any, changes: ChangeSet, *, held_out: frozenset[str], replay_ratio: float, max_chunks: int, seed: int = 0
) -> TrainingSelection:
    """Chunks of the added/modified documents (not held out), plus `replay_ratio` times as many chunks of
    the other documents, so the new adapter does not forget what did not change; at most `max_chunks`."""
    changed_docs = set(changes.with_text)
    chunks = [c for c in _usable(list(kb.all_chunks())) if c.id not in held_out]
    changed = sorted(c.id for c in chunks if c.doc_id in changed_docs)
    rest = sorted(c.id for c in chunks if c.doc_id not in changed_docs)
    rng = random.Random(seed)
    keep_changed = max(1, int(max_chunks / (1 + replay_ratio))) if changed else 0
    if len(changed) > keep_changed:
        changed = sorted(rng.sample(changed, keep_changed))
    replay_n = min(len(rest), round(replay_ratio * len(changed)), max_chunks - len(changed))
    replay = sorted(rng.sample(rest, max(replay_n, 0)))
    return TrainingSelection(tuple(changed), tuple(replay))
