"""Data-parallel pieces for the LoRA trainer under torchrun/accelerate: process group, sharding, DDP-able loss."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env() -> DistInfo:
    """Join the process group that torchrun/accelerate describe in the environment (NCCL on GPUs); else one process."""
    if "WORLD_SIZE" not in os.environ:  # not launched by torchrun/accelerate
        return DistInfo()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def shard(batches: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share of an epoch's micro-batches (every rank gets the same count; the remainder is dropped)."""
    usable = len(batches) - len(batches) % info.world
    return list(batches[info.rank:usable:info.world])


def loss_module(model: Any, plan: Any) -> Any:
    """An nn.Module whose forward(**batch) is the plan's loss, so DDP's gradient hooks see the whole step."""
    import torch

    class _Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, **inputs: Any) -> Any:
            return plan.loss(self.model, inputs)

    return _Loss()
