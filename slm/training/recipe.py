"""The `slm train` recipe: KB chunks → teacher QA → leak guard → RAFT examples → LoRA (+ KD) → registry.

Each step is one call into a component; the order is visible here, top to bottom.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from slm.access.labels import normalize_label, normalize_labels
from slm.config import Settings
from slm.errors import TrainingError
from slm.types import Chunk, QAExample

DATA_FILE = "data.jsonl"
RAFT_FILE = "raft.jsonl"
DONE_FILE = "done.json"


@dataclass(frozen=True)
class TrainOptions:
    """What the caller (CLI, retrain pipeline) chooses for this run; the model, teacher, epochs and chunk budget
    are training settings (`slm train --base/--teacher/--epochs/--max-chunks` override them in load_settings)."""

    audiences: frozenset[str] | None = None  # None: every chunk (trusted caller)
    eval_qa: tuple[Path, ...] = ()
    exclude_docs: tuple[str, ...] = ()
    data_file: Path | None = None  # user-supplied QA JSONL instead of generated data
    resume: bool = False
    promote: bool = False
    gate: bool = False  # evaluate against the served version on eval_qa; promote only if better
    gate_limit: int | None = 40  # questions the gate evaluates (None: all)
    gate_tolerance: float = 0.01
    prepare_only: bool = False  # stop after writing the tokenised data (train elsewhere, then --resume)
    max_steps: int | None = None
    progress: bool = True
    gpus: int = 1  # >1: the LoRA loop runs in that many processes on this machine (torchrun), one per GPU
    # Write questions only for these chunk ids (retraining: changed documents + a replay sample); None: all.
    # Every visible chunk still serves as a RAFT distractor.
    only_chunks: frozenset[str] | None = None


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


def find_run(kb_path: Path, resume: bool) -> Path:
    """A new run folder, or (resume) the latest one that did not finish."""
    runs = kb_path / "training" / "runs"
    if resume:
        unfinished = sorted(p for p in runs.glob("run-*") if p.is_dir() and not (p / DONE_FILE).exists())
        if not unfinished:
            raise TrainingError(f"nothing to resume: no unfinished training run in {runs}")
        return unfinished[-1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run = runs / f"run-{stamp}"
    n = 1
    while run.exists():
        n += 1
        run = runs / f"run-{stamp}-{n}"
    run.mkdir(parents=True)
    return run


def run_training(settings: Settings, options: TrainOptions, *, kb: Any = None, log=print) -> TrainReport:
    """Train an adapter on the knowledge base and register it; see the module docstring for the steps."""
    from slm.generation.loading import load_causal_lm
    from slm.adapters.registry import AdapterInfo, Registry
    from slm.training.data import encode_examples
    from slm.training.distributed import check_strategy
    from slm.training.leakcheck import LeakGuard, read_eval_questions
    from slm.training.lora import LoopConfig, LoopResult, LoraSpec, attach_lora, default_target_modules, train_lora
    from slm.training.prepared import launch_prepared, loop_finished, read_plan, write_plan
    from slm.training.questions import (
        QuestionPolicy, file_sha256, generate_examples, read_examples, sample_chunks, write_examples,
    )
    from slm.training.raft import build_raft_examples
    from slm.training.teacher import LocalTeacher, load_teacher

    if options.gate and not (settings.training.eval_qa or options.eval_qa):
        raise TrainingError("--gate needs evaluation questions: pass --eval-qa FILE (or set training.eval_qa)")
    check_strategy(settings.training.distributed)  # fail before the questions are written, not after
    started = time.perf_counter()
    cfg = settings.training
    base = cfg.base
    teacher_spec = cfg.teacher or "none"
    if teacher_spec == "base":
        teacher_spec = base
    notes: list[str] = []
    own_kb = kb is None
    if own_kb:
        from slm.kb.local import KnowledgeBase

        kb = KnowledgeBase.open(Path(settings.kb), settings)
    try:
        run_dir = find_run(Path(kb.path), options.resume)
        data_path = run_dir / DATA_FILE
        log(f"run folder: {run_dir}")

        # 1. the leak guard: evaluation questions that must never be trained on
        eval_files = [Path(p) for p in (*cfg.eval_qa, *options.eval_qa)]
        guard = LeakGuard(read_eval_questions(eval_files))
        exclude = (*cfg.exclude_docs, *options.exclude_docs)

        # 2. the chunks this adapter may learn from (audience-filtered, excluded docs removed)
        visible = list(kb.all_chunks(options.audiences))
        if not visible:
            raise TrainingError("the knowledge base has no chunks visible to these audiences: ingest documents first")
        pool = visible if options.only_chunks is None else [c for c in visible if c.id in options.only_chunks]
        chunks, excluded = sample_chunks(
            pool, cfg.max_chunks, seed=cfg.seed, exclude_docs=exclude
        )
        if exclude:
            notes.append(f"excluded {excluded} chunk(s) matching {', '.join(exclude)} from training data")
        hidden = _excluded_ids(visible, exclude)
        chunks_by_id = {c.id: c for c in visible if c.id not in hidden}

        # 3. QA data: reused on resume, user-supplied (refused if it leaks), or written by the teacher
        teacher = None
        student = None
        generation_stats: dict = {}
        if options.resume and data_path.is_file():
            examples = read_examples(data_path)
            log(f"resuming with the run's data ({len(examples)} examples)")
        elif options.data_file is not None:
            examples = read_examples(options.data_file)
            guard.refuse_leaks(examples, str(options.data_file))
            examples = [e for e in examples if not e.gold_chunk_ids or all(g in chunks_by_id for g in e.gold_chunk_ids)]
        else:
            if teacher_spec.lower() == "none":
                teacher = None
            elif teacher_spec == base:
                student = load_causal_lm(base, dtype=_train_dtype())
                teacher = LocalTeacher(student[0], student[1], name=base)
            else:
                teacher = load_teacher(teacher_spec)
            shown = settings.answering.max_passage_chars  # the model must find its answer in what it is shown
            policy = QuestionPolicy(teacher_answers=teacher is not None and teacher.writes_answers,
                                    max_passage_chars=shown, question_context_chars=shown,
                                    strip_heading=cfg.strip_heading)
            writer = "rules (no teacher model)" if teacher is None else f"teacher {teacher_spec}"
            log(f"writing questions for {len(chunks)} chunks with {writer}")
            examples, stats = generate_examples(
                chunks, teacher, policy=policy, questions_per_chunk=cfg.questions_per_chunk, progress=options.progress
            )
            generation_stats = stats.summary()
            leak = guard.filter(examples)
            examples = list(leak.kept)
            generation_stats["leak_dropped"] = leak.dropped_count
            if len(guard):
                notes.append(f"leak guard: dropped {leak.dropped_count} generated question(s) that duplicate "
                             f"{len(guard)} evaluation questions")
        if not examples:
            raise TrainingError("no usable training examples (every chunk was rejected); check the corpus")
        data_hash = write_examples(examples, data_path) if not (options.resume and data_path.is_file()) \
            else file_sha256(data_path)

        # 4. RAFT examples: gold chunk + hard distractors, or distractors only → abstain
        retriever = kb.retriever()

        def retrieve(question: str, k: int) -> list[Chunk]:
            hits = retriever.retrieve(question, k=k, audiences=options.audiences)
            return [h.chunk for h in hits if h.chunk.id in chunks_by_id]

        examples = [_with_gold(e, retrieve) for e in examples]
        raft, skipped = build_raft_examples(
            examples, chunks_by_id, retrieve, distractors=cfg.distractors, abstain_share=cfg.abstain_share,
            retrieval_order_share=cfg.retrieval_order_share, seed=cfg.seed, progress=options.progress,
        )
        if skipped:
            notes.append(f"{skipped} example(s) skipped: gold chunk not visible or no distractors")
        _write_raft(raft, run_dir / RAFT_FILE)
        used = {c.id for r in raft for c in r.passages}
        audiences = training_audiences([chunks_by_id[cid] for cid in used], options.audiences)

        # 5. student + tokenised examples (the serving prompt template, loss on answer tokens only)
        spec = LoraSpec(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                        tuple(cfg.target_modules) if cfg.target_modules else None)
        loop = LoopConfig(
            epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum, warmup_ratio=cfg.warmup_ratio, schedule=cfg.lr_schedule, seed=cfg.seed,
            save_every=cfg.save_every, max_steps=options.max_steps, distributed=cfg.distributed,
            **{**_speed_fields(cfg.speed), **_checkpointing_field(cfg.gradient_checkpointing)},
        )
        if options.resume and loop_finished(run_dir):  # the loop already ran (here, or on another machine)
            result = LoopResult.load(run_dir)
            plan = read_plan(run_dir)
            n_encoded, targets = plan["examples"], plan["target_modules"]
            log(f"the training loop of this run already finished ({result.steps} steps): registering it")
        else:
            if student is None:
                student = load_causal_lm(base, dtype=_train_dtype())
            model, tokenizer = student
            encoded, encode_stats = encode_examples(
                raft, tokenizer, max_seq_len=cfg.max_seq_len, max_passage_chars=settings.answering.max_passage_chars
            )
            if encode_stats["too_long"] or encode_stats["distractors_dropped"]:
                notes.append(f"fit to max_seq_len {cfg.max_seq_len}: {encode_stats['distractors_dropped']} "
                             f"distractor(s) dropped, {encode_stats['too_long']} example(s) too long")
            n_encoded = len(encoded)
            targets = list(spec.target_modules or default_target_modules(model))
            write_plan(run_dir, encoded, base=base, lora=replace(spec, target_modules=tuple(targets)), loop=loop,
                       pad_id=tokenizer.pad_token_id)
            log(f"{len(encoded)} training examples, {sum(len(e.input_ids) for e in encoded)} tokens")
            if options.prepare_only:
                log(f"prepared: train with `python -m slm.training.prepared {run_dir}` (any machine; on N GPUs "
                    f"`torchrun --nproc_per_node N -m slm.training.prepared {run_dir}`), copy its adapter/ and "
                    "loop_result.json back, then `slm train --resume`")
                return _prepared_report(run_dir, n_encoded, raft, data_hash, audiences, notes, generation_stats,
                                        started)

            if options.gpus > 1:  # 6. LoRA on several GPUs: each process loads the base; this one only prepared
                student = teacher = model = None
                _release_gpu_memory()
                if cfg.kd_weight > 0:
                    notes.append("token-level KD skipped: not applied on several GPUs")
                log(f"training on {options.gpus} processes ({cfg.distributed}): "
                    f"torchrun --nproc_per_node {options.gpus} -m slm.training.prepared {run_dir}")
                result = launch_prepared(run_dir, options.gpus)
            else:
                # 6. LoRA (+ token-level KD where the teacher shares the student's tokenizer)
                peft_model = attach_lora(model, replace(spec, target_modules=tuple(targets)), seed=cfg.seed)
                distiller = None
                if cfg.kd_weight > 0:
                    distiller, message = _distiller(peft_model, tokenizer, teacher, teacher_spec, base, cfg.kd_weight,
                                                    cfg.kd_top_k)
                    notes.append(message)
                result = train_lora(peft_model, encoded, loop, run_dir, pad_id=tokenizer.pad_token_id,
                                    resume=options.resume, distiller=distiller, progress=options.progress)

        # 7. register (promote only when asked)
        info = AdapterInfo(
            base=base,
            teacher=f"user data {options.data_file}" if options.data_file else teacher_spec,
            audiences=tuple(audiences),
            data_hash=data_hash,
            data_examples=len(examples),
            training={**asdict(cfg), **result.config, "max_passage_chars": settings.answering.max_passage_chars},
            lora=asdict(spec) | {"target_modules": targets},
            generation=generation_stats,
            eval_qa=tuple(str(p) for p in eval_files),
            exclude_docs=tuple(exclude),
            run_dir=str(run_dir),
            report={"steps": result.steps, "tokens": result.tokens, "tokens_per_second": result.tokens_per_second,
                    "train_seconds": result.seconds, "loop_peak_memory_mb": result.peak_memory_mb,
                    "processes": result.world, "losses": list(result.losses)},
        )
        registry = Registry(Path(kb.path) / "adapters")
        entry = registry.register(result.adapter_dir, info)
        promoted = options.promote
        if options.promote:
            registry.promote(entry.version)
        elif options.gate:
            from slm.training.gating import gate_new_version

            log(f"gating {entry.version}: evaluating it against the served version")
            decision = gate_new_version(settings, kb, entry.version, eval_files, run_dir / "gate-eval",
                                        limit=options.gate_limit, tolerance=options.gate_tolerance,
                                        progress=options.progress)
            promoted = decision.promote
            notes.append(("gate: promoted — " if promoted else "gate: not promoted — ") + "; ".join(decision.reasons))
        (run_dir / DONE_FILE).write_text(json.dumps({"version": entry.version}), encoding="utf-8")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        losses = result.losses or (float("nan"),)
        return TrainReport(
            version=entry.version, promoted=promoted, run_dir=run_dir, adapter_dir=entry.path,
            examples=n_encoded, abstain_examples=sum(r.gold is None for r in raft), tokens=result.tokens,
            answer_tokens=result.answer_tokens, tokens_per_second=result.tokens_per_second,
            train_seconds=result.seconds, wall_seconds=time.perf_counter() - started,
            peak_memory_mb=max(peak_memory_mb(), result.peak_memory_mb),
            steps=result.steps, loss_first=losses[0], loss_last=losses[-1], loss_min=min(losses),
            data_hash=data_hash, audiences=audiences, notes=tuple(notes), generation=generation_stats,
        )
    finally:
        if own_kb:
            kb.close()


def training_audiences(chunks: Sequence[Chunk], caller: frozenset[str] | None) -> tuple[str, ...]:
    """The labels a caller must all hold to be served the adapter: whoever holds them may see every
    training document. A document without labels adds "*" (trusted callers only). Trained for a
    caller (`--audience public`), the caller's own labels that the documents carry are enough."""
    groups = {tuple(normalize_label(label) for label in c.audiences) for c in chunks}
    labels = {label for group in groups for label in group} | ({"*"} if () in groups else set())
    if caller is not None:
        narrowed = labels & normalize_labels(caller)
        if narrowed and all(set(group) & narrowed for group in groups):
            return tuple(sorted(narrowed))
    return tuple(sorted(labels))


def _release_gpu_memory() -> None:
    """Give back the GPU memory of the model this process loaded for tokenising, before the training ranks start."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def _speed_fields(speed: str) -> dict[str, Any]:
    """LoopConfig fields for `training.speed`: the plain path, or the measured fast preset."""
    if speed == "plain":
        return {"gradient_checkpointing": True}
    if speed == "fast":
        import torch

        from slm.training.fast import fast_loop_fields

        return fast_loop_fields(cuda=torch.cuda.is_available())
    raise TrainingError(f"training.speed must be 'plain' or 'fast', not {speed!r}")


def _checkpointing_field(choice: str) -> dict[str, Any]:
    """`training.gradient_checkpointing`: auto keeps the speed preset's choice on a GPU (memory-bound) and turns
    recomputation off on a CPU (compute-bound: it costs about a third more work per step); on/off force it."""
    if choice == "auto":
        import torch

        return {} if torch.cuda.is_available() else {"gradient_checkpointing": False}
    if choice in ("on", "off"):
        return {"gradient_checkpointing": choice == "on"}
    raise TrainingError(f"training.gradient_checkpointing must be auto, on or off, not {choice!r}")


def _excluded_ids(chunks: Sequence[Chunk], exclude: Sequence[str]) -> set[str]:
    from slm.access.globs import document_matches

    if not exclude:
        return set()
    return {c.id for c in chunks if document_matches(c.doc_id, c.source, exclude)}


def _with_gold(example: QAExample, retrieve) -> QAExample:
    """User data without gold chunk ids: the top retrieved chunk for the question is taken as gold."""
    if example.gold_chunk_ids:
        return example
    hits = retrieve(example.question, 1)
    return replace(example, gold_chunk_ids=(hits[0].id,)) if hits else example


def _distiller(peft_model, tokenizer, teacher, teacher_spec: str, base: str, kd_weight: float, top_k: int = 0):
    from slm.training.distill import TokenDistiller, same_vocabulary
    from slm.training.teacher import LocalTeacher

    if teacher_spec.startswith(("http://", "https://")) or teacher_spec.lower() == "none":
        return None, "token-level KD skipped: the teacher is an endpoint (no logits); sequence-level only"
    if teacher_spec == base:
        return TokenDistiller.self_distill(peft_model, kd_weight), f"token-level KD on: self-distillation, weight {kd_weight}"
    if not isinstance(teacher, LocalTeacher):
        teacher = LocalTeacher.load(teacher_spec)
    if not same_vocabulary(tokenizer, teacher.tokenizer):
        return None, f"token-level KD skipped: {teacher_spec} and {base} have different vocabularies"
    return TokenDistiller.from_model(teacher.model, kd_weight, top_k=top_k), \
        f"token-level KD on: teacher {teacher_spec}, weight {kd_weight}" + (f", top {top_k} tokens" if top_k else "")


def _write_raft(raft, path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for r in raft:
            record = {"id": r.id, "question": r.question, "passages": [c.id for c in r.passages], "target": r.target}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _prepared_report(run_dir, n_encoded, raft, data_hash, audiences, notes, generation_stats, started) -> TrainReport:
    return TrainReport(
        version="", promoted=False, run_dir=run_dir, adapter_dir=run_dir / "adapter", examples=n_encoded,
        abstain_examples=sum(r.gold is None for r in raft), tokens=0, answer_tokens=0, tokens_per_second=0.0,
        train_seconds=0.0, wall_seconds=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(), steps=0,
        loss_first=float("nan"), loss_last=float("nan"), loss_min=float("nan"), data_hash=data_hash,
        audiences=audiences, notes=(*notes, "prepared only: no adapter trained or registered yet"),
        generation=generation_stats,
    )
