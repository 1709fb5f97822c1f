"""The LoRA fine-tuning loop: plain PyTorch (nanoGPT style), with atomic checkpoints and exact resume.

A checkpoint (every `save_every` optimizer steps) holds the adapter, optimizer, scheduler, RNG states,
the step and the data position; `resume=True` continues from the latest one and ends where an
uninterrupted run would have ended.

Under torchrun (several processes) the same loop is data-parallel (slm/training/distributed.py): each
rank takes every W-th micro-batch of an epoch, `batch_size` and `grad_accum` are per rank, so the global
batch is batch_size x grad_accum x W and a step equals one process's step with grad_accum x W. Rank 0
writes checkpoints, the adapter and the result.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from slm.errors import TrainingError
from slm.training.checkpoints import (  # noqa: F401  (latest_checkpoint: public here too)
    check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state, trainer_state,
)
from slm.training.data import EncodedExample

RESULT_FILE = "loop_result.json"
ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TARGETS_BY_ARCH: dict[str, tuple[str, ...]] = {
    **{arch: ATTENTION_MLP for arch in ("llama", "gemma", "gemma2", "gemma3", "gemma3_text", "mistral",
                                        "mixtral", "qwen2", "qwen3", "qwen2_moe", "smollm3", "olmo", "olmo2")},
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
}


@dataclass(frozen=True)
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None  # None: per-architecture default


@dataclass(frozen=True)
class LoopConfig:
    """The handful of values the loop needs; everything else is fixed by the data and model."""

    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.06
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 20  # optimizer steps between checkpoints; 0: never
    gradient_checkpointing: bool = True
    max_steps: int | None = None  # cap on optimizer steps (smoke runs)
    stop_after: int | None = None  # stop (as if interrupted) after this many steps; for tests
    # Fast path (slm/training/fast.py); all off: the plain trainer.
    packing: bool = False  # pack examples into rows (batch_size = rows per micro-batch), no padding waste
    pack_len: int = 0  # tokens per packed row; 0: the longest example
    answer_only_logits: bool = False  # LM head + loss on answer tokens only
    compile: bool = False  # torch.compile each decoder layer
    checkpoint_layers: int | None = None  # with gradient_checkpointing: None all layers, k the first k only
    # With several processes (torchrun): ddp replicates the model; fsdp shards it (FSDP2, per decoder layer)
    distributed: str = "ddp"


@dataclass(frozen=True)
class LoopResult:
    adapter_dir: Path
    steps: int
    total_steps: int
    tokens: int  # tokens processed (prompt + answer, no padding), summed over processes
    answer_tokens: int
    seconds: float
    losses: tuple[float, ...]  # one per optimizer step, over the whole run (resumed steps included)
    resumed_from: int = 0
    finished: bool = True
    config: dict = field(default_factory=dict)
    peak_memory_mb: float = 0.0  # of the process that ran the loop (GPU allocation included; rank 0)
    world: int = 1  # processes that trained (torchrun)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def save(self, run_dir: Path) -> None:
        data = asdict(self) | {"adapter_dir": self.adapter_dir.name, "losses": list(self.losses)}
        (run_dir / RESULT_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> "LoopResult":
        data = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        data["adapter_dir"] = run_dir / data["adapter_dir"]
        data["losses"] = tuple(data["losses"])
        return cls(**data)


# ------------------------------------------------------------------ model preparation
def linear_module_names(model: Any) -> set[str]:
    import torch

    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def default_target_modules(model: Any) -> list[str]:
    """Per-architecture LoRA targets (attention + MLP projections); else every Linear except the LM head."""
    present = linear_module_names(model)
    arch = getattr(model.config, "model_type", "")
    wanted = [name for name in TARGETS_BY_ARCH.get(arch, ()) if name in present]
    if wanted:
        return wanted
    return sorted(present - {"lm_head", "embed_out", "output"})


def attach_lora(model: Any, spec: LoraSpec, *, gradient_checkpointing: bool = True, seed: int = 0) -> Any:
    """Wrap a causal LM with fresh LoRA layers (seeded init); only they train."""
    import torch
    from peft import LoraConfig, get_peft_model

    targets = list(spec.target_modules) if spec.target_modules else default_target_modules(model)
    missing = [t for t in targets if t not in linear_module_names(model)]
    if missing:
        raise TrainingError(
            f"LoRA target module(s) {', '.join(missing)} not in this model; it has: "
            f"{', '.join(sorted(linear_module_names(model)))}"
        )
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    torch.manual_seed(seed)
    config = LoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise TrainingError(f"unknown LR schedule '{schedule}' (cosine, linear or constant)")

    return factor


# ------------------------------------------------------------------ the loop
def train_lora(
    model: Any,
    examples: Sequence[EncodedExample],
    config: LoopConfig,
    run_dir: Path,
    *,
    pad_id: int,
    resume: bool = False,
    distiller: Any = None,
    progress: bool = True,
) -> LoopResult:
    """Train the LoRA layers of `model` (already wrapped by attach_lora) on encoded examples.

    Under torchrun every rank calls this with the same model, examples and config (see the module docstring).
    """
    import torch
    from tqdm.auto import tqdm

    from slm.training.distributed import check_strategy, init_from_env, parallelize, shard, training_device
    from slm.training.fast import SpeedPlan

    if not examples:
        raise TrainingError("no training examples: nothing to train on")
    info = init_from_env()
    check_strategy(config.distributed)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = training_device(model, info)
    lengths = [len(e.input_ids) for e in examples]
    plan = SpeedPlan.from_loop(config, lengths, distiller=distiller)
    plan.prepare(model, device)

    def epoch_share(epoch: int) -> list[list[int]]:
        return shard(plan.batches(lengths, config.batch_size, seed=config.seed, epoch=epoch), info)

    per_epoch = len(epoch_share(0))
    if per_epoch == 0:
        raise TrainingError(f"{len(examples)} examples make fewer micro-batches than the {info.world} processes: "
                            "lower training.batch_size or train on fewer GPUs")
    total_micro = max(1, math.ceil(per_epoch * config.epochs))
    total_steps = math.ceil(total_micro / config.grad_accum)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
        total_micro = min(total_micro, total_steps * config.grad_accum)
    warmup = int(config.warmup_ratio * total_steps)

    state = None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:  # weights first: every rank loads the same full adapter, then FSDP shards it
        state = load_checkpoint(checkpoint, model)
        check_resumable(state, checkpoint, total_steps, len(examples), info.world, config.distributed)
    parallel = parallelize(model, _StepLoss(plan, distiller), info, config.distributed, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.schedule, warmup, total_steps))

    step, losses, resumed_from = 0, [], 0
    if state is not None:
        parallel.load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng_by_rank"][info.rank] if "rng_by_rank" in state else state["rng"])
        step, losses, resumed_from = state["step"], list(state["losses"]), state["step"]
    else:  # dropout differs between ranks (their data does too); rank 0 draws what one process would
        torch.manual_seed(config.seed + info.rank)
        random.seed(config.seed + info.rank)

    def micro_batches(start: int):
        """This rank's micro-batches from data position `start` on (epochs concatenated, deterministic)."""
        cache: dict[int, list[list[int]]] = {}
        for index in range(start, total_micro):
            epoch, offset = divmod(index, per_epoch)
            if epoch not in cache:
                cache = {epoch: epoch_share(epoch)}
            yield cache[epoch][offset]

    def save(step: int) -> None:
        """Every rank takes part (FSDP gathers the shards); rank 0 writes; all wait until it is complete."""
        saved = trainer_state(step, total_steps, len(examples), losses, parallel.optimizer_state(optimizer), scheduler)
        if info.world > 1:
            saved |= {"world": info.world, "strategy": parallel.strategy, "rng_by_rank": parallel.gather(saved["rng"])}
        adapter_state = parallel.adapter_state()
        if info.main:
            save_checkpoint(run_dir, model, saved, adapter_state)
        parallel.barrier()

    model.train()
    tokens = answer_tokens = 0
    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", disable=not (progress and info.main))
    stream = micro_batches(step * config.grad_accum)
    while step < total_steps:
        optimizer.zero_grad(set_to_none=True)
        accumulated = 0.0
        micro_in_step = min(config.grad_accum, total_micro - step * config.grad_accum)
        for micro in range(micro_in_step):
            batch = plan.collate([examples[i] for i in next(stream)], pad_id)
            tokens += int(batch["attention_mask"].sum())
            answer_tokens += int((batch["labels"] != -100).sum())
            inputs = {k: v.to(device) for k, v in batch.items()}
            with parallel.gradient_sync(micro == micro_in_step - 1):  # ranks average gradients once per step
                with _autocast(device):
                    loss = parallel.module(**inputs)
                (loss / micro_in_step).backward()
            accumulated += float(loss.detach()) / micro_in_step
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(parallel.mean(accumulated))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.update(1)
        if config.save_every and step % config.save_every == 0 and step < total_steps:
            save(step)
        if config.stop_after and step >= config.stop_after and step < total_steps:
            bar.close()
            tokens, answer_tokens = parallel.total(tokens, answer_tokens)
            return LoopResult(run_dir / "adapter", step, total_steps, tokens, answer_tokens,
                              time.perf_counter() - started, tuple(losses), resumed_from, False, asdict(config),
                              world=info.world)
    bar.close()
    seconds = time.perf_counter() - started
    tokens, answer_tokens = parallel.total(tokens, answer_tokens)
    adapter_state = parallel.adapter_state()
    adapter_dir = run_dir / "adapter"
    result = LoopResult(adapter_dir, step, total_steps, tokens, answer_tokens, seconds, tuple(losses), resumed_from,
                        True, asdict(config), _peak_memory_mb(), info.world)
    if info.main:
        tmp = run_dir / ".adapter.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, state_dict=adapter_state)
        shutil.rmtree(adapter_dir, ignore_errors=True)
        os.replace(tmp, adapter_dir)
        result.save(run_dir)
    parallel.barrier()
    model.eval()
    return result


class _StepLoss:
    """The loss of one micro-batch: the fast path's, or the model's own (plus token-level KD)."""

    def __init__(self, plan: Any, distiller: Any) -> None:
        self.plan, self.distiller = plan, distiller

    def loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        if self.plan.custom_loss:
            return self.plan.loss(model, inputs)
        out = model(**inputs)
        if self.distiller is None:
            return out.loss
        return self.distiller.loss(out.loss, out.logits, inputs)


def _autocast(device: Any):
    import contextlib

    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _peak_memory_mb() -> float:
    import resource

    import torch

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak
