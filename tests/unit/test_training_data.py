"""Tokenising with the serving template: loss only on answer tokens; fitting; batching; collation."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from slm.answering.prompting import build_messages, render_prompt
from slm.training.data import IGNORE_INDEX, collate, encode_example, encode_examples, epoch_batches, turn_end
from slm.training.raft import RaftExample
from slm.types import Chunk


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def _example(n_passages=3, text="Refunds are paid within 30 days. " * 3):
    chunks = tuple(Chunk(id=f"d{i}::0000", doc_id=f"d{i}", text=f"{i} {text}", start=0, end=10, title=f"Doc {i}")
                   for i in range(n_passages))
    return RaftExample(id="x", question="When are refunds paid?", passages=chunks, gold=1,
                       answer="Refunds are paid within 30 days.")


def test_labels_cover_exactly_the_answer_and_end_of_turn(tokenizer):
    example = _example()
    encoded, dropped = encode_example(example, tokenizer, max_seq_len=4096)
    assert dropped == 0
    prompt = render_prompt(tokenizer, build_messages(example.question, example.passages))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # the prompt part is exactly what serving feeds the model, and it carries no loss
    assert list(encoded.input_ids[: len(prompt_ids)]) == prompt_ids
    assert all(label == IGNORE_INDEX for label in encoded.labels[: len(prompt_ids)])
    answer = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(answer) == "Refunds are paid within 30 days. [2]<|im_end|>"
    assert encoded.answer_tokens == len(encoded.input_ids) - len(prompt_ids)


def test_turn_end_comes_from_the_chat_template(tokenizer):
    assert turn_end(tokenizer) == "<|im_end|>"


def test_long_examples_lose_distractors_then_are_dropped(tokenizer):
    example = _example(n_passages=4, text="word " * 120)
    full, _ = encode_example(example, tokenizer, max_seq_len=100_000)
    fitted, dropped = encode_example(example, tokenizer, max_seq_len=len(full.input_ids) - 10)
    assert dropped == 1 and fitted is not None and len(fitted.input_ids) < len(full.input_ids)
    answer = tokenizer.decode([t for t, label in zip(fitted.input_ids, fitted.labels) if label != IGNORE_INDEX])
    assert "[2]" in answer or "[1]" in answer
    encoded, stats = encode_examples([example], tokenizer, max_seq_len=50)
    assert encoded == [] and stats["too_long"] == 1


def test_collate_pads_right_and_masks_padding(tokenizer):
    a, _ = encode_example(_example(2), tokenizer, max_seq_len=4096)
    b, _ = encode_example(_example(3), tokenizer, max_seq_len=4096)
    batch = collate([a, b], pad_id=tokenizer.pad_token_id)
    width = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, width)
    short = 0 if len(a.input_ids) < len(b.input_ids) else 1
    n = min(len(a.input_ids), len(b.input_ids))
    assert batch["attention_mask"][short, n:].sum() == 0
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][short, :n].all()


def test_epoch_batches_cover_every_example_once_and_are_deterministic():
    lengths = [5, 3, 9, 1, 7, 2, 8, 4, 6, 10]
    batches = epoch_batches(lengths, 3, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == epoch_batches(lengths, 3, seed=0, epoch=0)
    assert batches != epoch_batches(lengths, 3, seed=0, epoch=1)
