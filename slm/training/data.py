"""Tokenise RAFT examples with the serving prompt template, mask the prompt out of the loss, batch them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from slm.answering.prompting import render_prompt
from slm.training.raft import RaftExample

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of prompt + answer; labels are IGNORE_INDEX on every prompt token."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def turn_end(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message (e.g. '<|im_end|>'), so the model learns to stop."""
    if getattr(tokenizer, "chat_template", None):
        probe = "Z9Z9Z9"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}], tokenize=False
        )
        if probe in text:
            suffix = text.split(probe, 1)[1].rstrip("\n ")
            if suffix:
                return suffix
    return tokenizer.eos_token or ""


def encode_example(
    example: RaftExample, tokenizer: Any, *, max_seq_len: int, max_passage_chars: int = 900, end: str | None = None
) -> tuple[EncodedExample | None, int]:
    """Encode one example, dropping distractors until it fits; returns (encoded or None, distractors dropped).

    The prompt is `render_prompt(build_messages(...))` tokenised on its own, exactly as serving does,
    and the answer tokens follow it; only the answer (and the end-of-turn marker) carries labels.
    """
    end = turn_end(tokenizer) if end is None else end
    dropped = 0
    current: RaftExample | None = example
    while current is not None:
        prompt = render_prompt(tokenizer, current.messages(max_passage_chars))
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(current.target + end, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) + len(answer_ids) <= max_seq_len:
            ids = tuple(prompt_ids) + tuple(answer_ids)
            labels = (IGNORE_INDEX,) * len(prompt_ids) + tuple(answer_ids)
            return EncodedExample(current.id, ids, labels), dropped
        current = current.drop_one_distractor()
        dropped += 1
    return None, dropped


def encode_examples(
    examples: Sequence[RaftExample], tokenizer: Any, *, max_seq_len: int, max_passage_chars: int = 900
) -> tuple[list[EncodedExample], dict[str, int]]:
    """Encode all examples; stats count distractors dropped to fit and examples too long even alone."""
    end = turn_end(tokenizer)
    out, stats = [], {"distractors_dropped": 0, "too_long": 0}
    for example in examples:
        encoded, dropped = encode_example(
            example, tokenizer, max_seq_len=max_seq_len, max_passage_chars=max_passage_chars, end=end
        )
        stats["distractors_dropped"] += dropped
        if encoded is None:
            stats["too_long"] += 1
        else:
            out.append(encoded)
    return out, stats


def epoch_batches(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Deterministic batches for an epoch: shuffled, then length-sorted within windows to cut padding."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 8
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(batch: Sequence[EncodedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask (0 on padding), labels (IGNORE_INDEX on padding)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
