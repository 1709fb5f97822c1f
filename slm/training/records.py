"""The records of a training run: the frozen ones the recipe's steps hand on (slm.training.recipe), the models
it loaded, and the report it ends with."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from slm.training.loop_settings import release_gpu_memory
from slm.types import Chunk, QAExample

if TYPE_CHECKING:
    from slm.training.data import EncodedExample
    from slm.training.leakcheck import LeakGuard
    from slm.training.lora import LoopConfig, LoopResult, LoraSpec
    from slm.training.raft import RaftExample

DATA_FILE = "data.jsonl"  # a run's QA examples, in its folder


@dataclass(frozen=True)
class RunSetup:
    """Fixed by setup for the whole run: its folder, the models named, and the evaluation questions guarded."""

    run_dir: Path
    base: str  # the student's base model spec
    teacher_spec: str  # "none" (rules), the base itself (self-teaching), a model spec or an endpoint
    eval_files: tuple[Path, ...]
    exclude: tuple[str, ...]  # doc-id globs kept out of the training data
    guard: LeakGuard  # step 1: evaluation questions that must never be trained on
    started: float  # time.perf_counter() when the run began

    @property
    def data_path(self) -> Path:
        return self.run_dir / DATA_FILE


@dataclass(frozen=True)
class TrainingChunks:
    """Step 2: the chunks questions are written for, and every chunk the adapter may learn from (distractors)."""

    sampled: tuple[Chunk, ...]
    by_id: Mapping[str, Chunk]  # visible to the run's audiences, excluded documents removed
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class QAData:
    """Step 3: the question-answer examples of the run, as in its data.jsonl."""

    examples: tuple[QAExample, ...]
    data_hash: str  # sha256 of data.jsonl
    generation: Mapping[str, Any]  # the question generation's stats ({} for reused or user data)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RaftData:
    """Step 4: the RAFT examples (gold chunk + distractors, or distractors only → abstain) and whom they expose."""

    examples: tuple[RaftExample, ...]
    audiences: tuple[str, ...]  # slm.training.recipe.training_audiences of the chunks they show
    notes: tuple[str, ...] = ()

    @property
    def abstain_examples(self) -> int:
        return sum(r.gold is None for r in self.examples)


@dataclass(frozen=True)
class LoopPlan:
    """Step 5: the LoRA and loop settings and the tokenised examples; `finished` when this run's loop already ran
    (here, or on another machine after --prepare-only), and then nothing is tokenised again."""

    spec: LoraSpec  # as configured (target_modules None: the model's defaults, listed in `targets`)
    targets: tuple[str, ...]
    loop: LoopConfig
    encoded: tuple[EncodedExample, ...]
    examples: int  # tokenised examples (a finished run's: as its plan recorded)
    finished: LoopResult | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainedLoop:
    """Step 6: what the LoRA loop reported."""

    result: LoopResult
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registration:
    """Step 7: the registered version and whether it now serves."""

    version: str
    path: Path
    promoted: bool
    notes: tuple[str, ...] = ()


@dataclass
class LoadedModels:
    """The models this run loaded: the student (model, tokenizer) and the teacher. Not frozen on purpose: a
    multi-GPU run drops them, so their GPU memory is free before its ranks start."""

    student: tuple[Any, Any] | None = None
    teacher: Any = None

    def release(self) -> None:
        self.student = self.teacher = None
        release_gpu_memory()


@dataclass(frozen=True)
class TrainReport:
    version: str
    promoted: bool
    run_dir: Path
    adapter_dir: Path
    examples: int
    abstain_examples: int
    tokens: int
    answer_tokens: int
    tokens_per_second: float
    train_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    steps: int
    loss_first: float
    loss_last: float
    loss_min: float
    data_hash: str
    audiences: tuple[str, ...]
    notes: tuple[str, ...] = ()
    generation: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        if not self.version:
            return [f"prepared {self.examples} examples ({self.abstain_examples} abstain); nothing trained yet",
                    f"data: sha256 {self.data_hash[:16]}…", f"run folder: {self.run_dir}", *self.notes]
        return [
            f"registered {self.version}" + (" (promoted)" if self.promoted else " (not promoted: `slm models promote "
                                              f"{self.version}`)"),
            f"examples: {self.examples} ({self.abstain_examples} abstain), steps: {self.steps}",
            f"tokens: {self.tokens} ({self.answer_tokens} answer tokens), {self.tokens_per_second:.1f} tokens/s",
            f"time: training {self.train_seconds:.1f}s, total {self.wall_seconds:.1f}s; "
            f"peak memory {self.peak_memory_mb:.0f} MB",
            f"loss: first {self.loss_first:.3f}, last {self.loss_last:.3f}, min {self.loss_min:.3f}",
            f"data: sha256 {self.data_hash[:16]}…, audiences {', '.join(self.audiences) or '(none)'}",
            f"run folder: {self.run_dir}",
            *self.notes,
        ]


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and the GPU's peak allocation where there is one)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    try:
        import torch

        if torch.cuda.is_available():
            peak += torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    return peak


def prepared_report(run_dir, n_encoded, raft, data_hash, audiences, notes, generation_stats, started) -> TrainReport:
    """The report of a --prepare-only run: the data is ready, nothing is trained or registered yet."""
    return TrainReport(
        version="", promoted=False, run_dir=run_dir, adapter_dir=run_dir / "adapter", examples=n_encoded,
        abstain_examples=sum(r.gold is None for r in raft), tokens=0, answer_tokens=0, tokens_per_second=0.0,
        train_seconds=0.0, wall_seconds=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(), steps=0,
        loss_first=float("nan"), loss_last=float("nan"), loss_min=float("nan"), data_hash=data_hash,
        audiences=audiences, notes=(*notes, "prepared only: no adapter trained or registered yet"),
        generation=generation_stats,
    )
