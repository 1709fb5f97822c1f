"""Data-parallel pieces for the LoRA trainer under torchrun/accelerate: process group, sharding, DDP/FSDP wrapping.

`parallelize` turns the loop's loss into the module each process calls: itself (one process), DDP (the model
replicated, LoRA gradients averaged) or FSDP2 (`fully_shard` per decoder layer, for bases that do not fit one
GPU). `Parallel` then answers the few questions the loop has: sync this micro-batch? the loss averaged over
ranks? the full adapter and optimizer state, gathered on rank 0 for a checkpoint?
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, ContextManager, Sequence, TypeVar

from slm.errors import TrainingError

T = TypeVar("T")
STRATEGIES = ("ddp", "fsdp")


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
    """This rank's share of an epoch's micro-batches (every rank gets the same count; the remainder is dropped).

    Rank r takes batches r, r+W, r+2W, ...: the k-th micro-batches of all ranks are consecutive batches, so a
    step of `grad_accum` micro-batches per rank covers the same batches as one process with grad_accum * W.
    """
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


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise TrainingError(f"training.distributed must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    return strategy


def training_device(model: Any, info: DistInfo) -> Any:
    """Where this rank computes: its own GPU under torchrun, else wherever the model already is."""
    import torch

    if info.world > 1 and torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return next(model.parameters()).device


@dataclass
class Parallel:
    """The loss module each process calls, and the collectives the loop needs around it."""

    info: DistInfo
    strategy: str  # "single" | "ddp" | "fsdp"
    module: Any  # module(**inputs) -> loss of the micro-batch
    model: Any  # the PEFT model inside (names and adapter config)

    @property
    def main(self) -> bool:
        return self.info.main

    def gradient_sync(self, sync: bool) -> ContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step (gradients accumulate locally)."""
        if self.strategy == "ddp" and not sync:
            return self.module.no_sync()
        if self.strategy == "fsdp":
            self.module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def mean(self, value: float) -> float:
        """`value` averaged over ranks (the logged loss of a step is the loss of the whole global batch)."""
        if self.info.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor)
        return float(tensor) / self.info.world

    def total(self, *values: int) -> tuple[int, ...]:
        """Integers summed over ranks (tokens processed)."""
        if self.info.world == 1:
            return tuple(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(tensor)
        return tuple(int(v) for v in tensor.tolist())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (RNG states for a checkpoint), on every rank."""
        if self.info.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.info.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.info.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def adapter_state(self) -> dict | None:
        """The full LoRA weights for `save_pretrained(state_dict=...)` on rank 0 (None: the model's own).

        Under FSDP each rank holds a shard of every LoRA matrix; all ranks take part in the gather, so call it
        on every rank before rank 0 writes.
        """
        if self.strategy != "fsdp":
            return None
        full = {name: p.full_tensor().detach().cpu() for name, p in self.model.named_parameters() if p.requires_grad}
        return full if self.main else None

    def optimizer_state(self, optimizer: Any) -> dict:
        """The optimizer state to checkpoint: replicated (one process, DDP) or gathered by name (FSDP; rank 0)."""
        if self.strategy != "fsdp":
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.module, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, optimizer: Any, state: dict) -> None:
        """Load what `optimizer_state` saved (every rank read the same checkpoint; FSDP re-shards it)."""
        if self.strategy != "fsdp":
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(self.module, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def _comm_device(self) -> Any:
        import torch
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"


def parallelize(model: Any, step_loss: Any, info: DistInfo, strategy: str, device: Any) -> Parallel:
    """Wrap the loss of a LoRA model for this process: itself (world 1), DDP or FSDP2 over all ranks.

    Call before building the optimizer (FSDP replaces the parameters by sharded ones) and after loading any
    checkpoint weights (every rank loads the same full weights; FSDP shards them).
    """
    module = loss_module(model, step_loss)
    if info.world == 1:
        return Parallel(info, "single", module, model)
    check_strategy(strategy)
    if strategy == "ddp":
        return Parallel(info, "ddp", _ddp(module, device), model)
    return Parallel(info, "fsdp", _fsdp(module, model, device, info), model)


def _ddp(module: Any, device: Any) -> Any:
    """DDP over the trainable (LoRA) parameters only: the frozen base is identical on every rank by construction,
    so it is neither broadcast at start nor reduced; every LoRA layer is used each step (no unused-param search)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    module.to(device)
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    frozen += [n for n, _ in module.named_buffers()]
    DDP._set_params_and_buffers_to_ignore_for_model(module, frozen)
    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False,
               find_unused_parameters=False, gradient_as_bucket_view=True)


def _fsdp(module: Any, model: Any, device: Any, info: DistInfo) -> Any:
    """FSDP2: each decoder layer is one shard group (gathered just for its forward/backward); embeddings, final
    norm and LM head form the root group. The model may still be on the CPU: shards move to `device`."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from slm.training.fast import decoder_layers

    mesh = init_device_mesh(device.type, (info.world,))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    return fully_shard(module, mesh=mesh)
