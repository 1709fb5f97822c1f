"""Sequence packing: several examples share a row, position ids restart at each one, no padding waste.

Rows are filled first-fit in a fixed order, so the batcher and the collator agree on the layout without
passing it around; the model keeps examples apart by their position ids (transformers builds a
block-diagonal causal mask from the restarts when no 2D attention mask is given).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from slm.errors import TrainingError
from slm.training.data import IGNORE_INDEX, EncodedExample

LOOKAHEAD_PER_ROW = 32  # candidates scanned per row when filling a micro-batch


def first_fit(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Place items (by position in `lengths`) into rows of `row_len` tokens, each into the first row with room."""
    rows: list[list[int]] = []
    free: list[int] = []
    for index, n in enumerate(lengths):
        if n > row_len:
            raise TrainingError(f"an example of {n} tokens does not fit a packed row of {row_len}; raise pack_len")
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(index)
                free[r] -= n
                break
        else:
            rows.append([index])
            free.append(row_len - n)
    return rows


def packed_epoch_batches(
    lengths: Sequence[int], rows: int, *, seed: int, epoch: int, row_len: int
) -> list[list[int]]:
    """Deterministic micro-batches for an epoch: shuffled examples packed into at most `rows` rows each.

    Each micro-batch lists example indices in the order `first_fit` must see them to rebuild its rows;
    an example that does not fit the current micro-batch waits for a later one (bounded lookahead).
    The packing is made once (epoch 0) and each later epoch reorders its micro-batches, so every epoch
    has the same number of them (the loop's step count and resume position rely on that).
    """
    if rows < 1:
        raise TrainingError("packing needs at least one row per micro-batch (batch_size >= 1)")
    too_long = [n for n in lengths if n > row_len]
    if too_long:
        raise TrainingError(f"an example of {max(too_long)} tokens does not fit a packed row of {row_len}")
    rng = random.Random(seed * 1_000_003)
    pool = list(range(len(lengths)))
    rng.shuffle(pool)
    batches: list[list[int]] = []
    lookahead = max(1, rows * LOOKAHEAD_PER_ROW)
    while pool:
        free: list[int] = []
        chosen: list[int] = []
        taken: set[int] = set()
        for slot, index in enumerate(pool[:lookahead]):
            n = lengths[index]
            for r, room in enumerate(free):
                if n <= room:
                    free[r] -= n
                    break
            else:
                if len(free) == rows:
                    continue
                free.append(row_len - n)
            chosen.append(index)
            taken.add(slot)
        batches.append(chosen)
        pool = [index for slot, index in enumerate(pool) if slot not in taken]
    if epoch:
        random.Random(seed * 1_000_003 + epoch).shuffle(batches)
    return batches


def collate_packed(batch: Sequence[EncodedExample], pad_id: int, *, row_len: int) -> dict[str, Any]:
    """Rows of `row_len` tokens: input_ids, labels, position_ids (restarting per example), attention_mask.

    `attention_mask` marks real tokens (1) versus row-end padding (0) for counting only: the model must be
    called without it (see `fast.model_inputs`) so that it separates examples by their position ids. The
    first token of each example never carries a label, so no example is predicted from its neighbour.
    """
    import torch

    layout = first_fit([len(e.input_ids) for e in batch], row_len)
    ids = torch.full((len(layout), row_len), pad_id, dtype=torch.long)
    labels = torch.full((len(layout), row_len), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(layout), row_len), dtype=torch.long)
    mask = torch.zeros((len(layout), row_len), dtype=torch.long)
    for row, members in enumerate(layout):
        at = 0
        for index in members:
            example = batch[index]
            n = len(example.input_ids)
            ids[row, at : at + n] = torch.tensor(example.input_ids)
            labels[row, at + 1 : at + n] = torch.tensor(example.labels[1:])
            positions[row, at : at + n] = torch.arange(n)
            mask[row, at : at + n] = 1
            at += n
        positions[row, at:] = torch.arange(row_len - at)  # padding is its own (ignored) sequence
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def packing_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]], row_len: int) -> float:
    """Share of row slots that hold real tokens."""
    slots = sum(len(first_fit([lengths[i] for i in b], row_len)) * row_len for b in batches)
    return sum(lengths[i] for b in batches for i in b) / slots if slots else 0.0
