"""The `slm train` recipe: KB chunks → teacher QA → leak guard → RAFT examples → LoRA (+ KD) → registry.

`run_training` is the recipe: setup, then steps 1-7, then cleanup, in order, top to bottom. Each step is a
small function calling into components and handing a frozen record to the next.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from slm.access.labels import normalize_label, normalize_labels
from slm.config import Settings
from slm.errors import TrainingError
from slm.training.loop_settings import (
    check_kd_weight, checkpointing_field, distiller_for, speed_fields, train_dtype,
)
from slm.training.records import (
    LoadedModels, LoopPlan, QAData, RaftData, Registration, RunSetup, TrainedLoop, TrainingChunks,
    TrainReport, peak_memory_mb, prepared_report,
)
from slm.types import Chunk, QAExample

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


# ------------------------------------------------------------------ the recipe
def run_training(settings: Settings, options: TrainOptions, *, kb: Any = None, log=print) -> TrainReport:
    """Train an adapter on the knowledge base and register it; see the module docstring for the steps."""
    from slm.training.distributed import check_strategy

    if options.gate and not (settings.training.eval_qa or options.eval_qa):
        raise TrainingError("--gate needs evaluation questions: pass --eval-qa FILE (or set training.eval_qa)")
    check_strategy(settings.training.distributed)  # fail before the questions are written, not after
    check_kd_weight(settings.training.kd_weight)
    started = time.perf_counter()
    own_kb = kb is None
    if own_kb:
        from slm.kb.local import KnowledgeBase

        kb = KnowledgeBase.open(Path(settings.kb), settings)
    models = LoadedModels()
    try:
        setup = setup_run(settings, options, Path(kb.path), started, log)  # 1. the leak guard
        chunks = select_chunks(settings, options, kb, setup)  # 2
        qa = qa_examples(settings, options, setup, chunks, models, log)  # 3
        raft = raft_examples(settings, options, kb, setup, chunks, qa)  # 4
        plan = plan_loop(settings, options, setup, raft, models, log)  # 5
        notes = (*chunks.notes, *qa.notes, *raft.notes, *plan.notes)
        if plan.finished is None and options.prepare_only:
            log(f"prepared: train with `python -m slm.training.prepared {setup.run_dir}` (any machine; on N GPUs "
                f"`torchrun --nproc_per_node N -m slm.training.prepared {setup.run_dir}`), copy its adapter/ and "
                "loop_result.json back, then `slm train --resume`")
            return prepared_report(setup.run_dir, plan.examples, raft.examples, qa.data_hash, raft.audiences,
                                    list(notes), dict(qa.generation), started)
        trained = train_adapter(settings, options, setup, plan, models, log)  # 6
        registered = register_adapter(settings, options, kb, setup, qa, raft, plan, trained, log)  # 7
        finish_run(setup.run_dir, registered.version)
        return _report(setup, qa, raft, plan, trained, registered, (*notes, *trained.notes, *registered.notes))
    finally:
        if own_kb:
            kb.close()


def setup_run(settings: Settings, options: TrainOptions, kb_path: Path, started: float, log) -> RunSetup:
    """The run folder (new, or the unfinished one to resume), the models named, and 1. the leak guard."""
    from slm.training.leakcheck import LeakGuard, read_eval_questions

    cfg = settings.training
    teacher_spec = cfg.teacher or "none"
    if teacher_spec == "base":
        teacher_spec = cfg.base
    run_dir = find_run(kb_path, options.resume)
    log(f"run folder: {run_dir}")
    eval_files = tuple(Path(p) for p in (*cfg.eval_qa, *options.eval_qa))
    return RunSetup(run_dir=run_dir, base=cfg.base, teacher_spec=teacher_spec, eval_files=eval_files,
                    exclude=(*cfg.exclude_docs, *options.exclude_docs),
                    guard=LeakGuard(read_eval_questions(list(eval_files))), started=started)


def select_chunks(settings: Settings, options: TrainOptions, kb: Any, setup: RunSetup) -> TrainingChunks:
    """2. The chunks this adapter may learn from (audience-filtered, excluded docs removed)."""
    from slm.training.questions import sample_chunks

    cfg = settings.training
    visible = list(kb.all_chunks(options.audiences))
    if not visible:
        raise TrainingError("the knowledge base has no chunks visible to these audiences: ingest documents first")
    pool = visible if options.only_chunks is None else [c for c in visible if c.id in options.only_chunks]
    sampled, excluded = sample_chunks(pool, cfg.max_chunks, seed=cfg.seed, exclude_docs=setup.exclude)
    notes = (f"excluded {excluded} chunk(s) matching {', '.join(setup.exclude)} from training data",) \
        if setup.exclude else ()
    hidden = _excluded_ids(visible, setup.exclude)
    return TrainingChunks(tuple(sampled), {c.id: c for c in visible if c.id not in hidden}, notes)


def qa_examples(settings: Settings, options: TrainOptions, setup: RunSetup, chunks: TrainingChunks,
                models: LoadedModels, log) -> QAData:
    """3. QA data: reused on resume, user-supplied (refused if it leaks), or written by the teacher."""
    from slm.training.questions import QuestionPolicy, file_sha256, generate_examples, read_examples, write_examples

    cfg = settings.training
    reused = options.resume and setup.data_path.is_file()
    generation_stats: dict = {}
    notes: tuple[str, ...] = ()
    if reused:
        examples = read_examples(setup.data_path)
        log(f"resuming with the run's data ({len(examples)} examples)")
    elif options.data_file is not None:
        examples = read_examples(options.data_file)
        setup.guard.refuse_leaks(examples, str(options.data_file))
        examples = [e for e in examples if not e.gold_chunk_ids or all(g in chunks.by_id for g in e.gold_chunk_ids)]
    else:
        teacher = _load_teacher(setup, models)
        shown = settings.answering.max_passage_chars  # the model must find its answer in what it is shown
        policy = QuestionPolicy(teacher_answers=teacher is not None and teacher.writes_answers,
                                max_passage_chars=shown, question_context_chars=shown,
                                strip_heading=cfg.strip_heading)
        writer = "rules (no teacher model)" if teacher is None else f"teacher {setup.teacher_spec}"
        log(f"writing questions for {len(chunks.sampled)} chunks with {writer}")
        examples, stats = generate_examples(
            list(chunks.sampled), teacher, policy=policy, questions_per_chunk=cfg.questions_per_chunk,
            progress=options.progress,
        )
        generation_stats = stats.summary()
        leak = setup.guard.filter(examples)
        examples = list(leak.kept)
        generation_stats["leak_dropped"] = leak.dropped_count
        if len(setup.guard):
            notes = (f"leak guard: dropped {leak.dropped_count} generated question(s) that duplicate "
                     f"{len(setup.guard)} evaluation questions",)
    if not examples:
        raise TrainingError("no usable training examples (every chunk was rejected); check the corpus")
    data_hash = file_sha256(setup.data_path) if reused else write_examples(examples, setup.data_path)
    return QAData(tuple(examples), data_hash, generation_stats, notes)


def _load_teacher(setup: RunSetup, models: LoadedModels) -> Any:
    """The teacher that writes the questions (None: rules); the base teaching itself is also the student."""
    from slm.generation.loading import load_causal_lm
    from slm.training.teacher import LocalTeacher, load_teacher

    if setup.teacher_spec.lower() == "none":
        models.teacher = None
    elif setup.teacher_spec == setup.base:
        models.student = load_causal_lm(setup.base, dtype=train_dtype())
        models.teacher = LocalTeacher(models.student[0], models.student[1], name=setup.base)
    else:
        models.teacher = load_teacher(setup.teacher_spec)
    return models.teacher


def raft_examples(settings: Settings, options: TrainOptions, kb: Any, setup: RunSetup, chunks: TrainingChunks,
                  qa: QAData) -> RaftData:
    """4. RAFT examples: gold chunk + hard distractors, or distractors only → abstain (written to raft.jsonl)."""
    from slm.training.raft import build_raft_examples

    cfg = settings.training
    retriever = kb.retriever()

    def retrieve(question: str, k: int) -> list[Chunk]:
        hits = retriever.retrieve(question, k=k, audiences=options.audiences)
        return [h.chunk for h in hits if h.chunk.id in chunks.by_id]

    examples = [_with_gold(e, retrieve) for e in qa.examples]
    raft, skipped = build_raft_examples(
        examples, chunks.by_id, retrieve, distractors=cfg.distractors, abstain_share=cfg.abstain_share,
        retrieval_order_share=cfg.retrieval_order_share, seed=cfg.seed, progress=options.progress,
    )
    notes = (f"{skipped} example(s) skipped: gold chunk not visible or no distractors",) if skipped else ()
    _write_raft(raft, setup.run_dir / RAFT_FILE)
    used = {c.id for r in raft for c in r.passages}
    audiences = training_audiences([chunks.by_id[cid] for cid in used], options.audiences)
    return RaftData(tuple(raft), audiences, notes)


def plan_loop(settings: Settings, options: TrainOptions, setup: RunSetup, raft: RaftData, models: LoadedModels,
              log) -> LoopPlan:
    """5. Student + tokenised examples (the serving prompt template, loss on answer tokens only), written as the
    run's plan so the loop can also run elsewhere."""
    from slm.generation.loading import load_causal_lm
    from slm.training.data import encode_examples
    from slm.training.lora import LoopConfig, LoopResult, LoraSpec, default_target_modules
    from slm.training.prepared import loop_finished, read_plan, write_plan

    cfg = settings.training
    spec = LoraSpec(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout,
                    tuple(cfg.target_modules) if cfg.target_modules else None)
    loop = LoopConfig(
        epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum, warmup_ratio=cfg.warmup_ratio, schedule=cfg.lr_schedule, seed=cfg.seed,
        save_every=cfg.save_every, max_steps=options.max_steps, distributed=cfg.distributed,
        **{**speed_fields(cfg.speed), **checkpointing_field(cfg.gradient_checkpointing)},
    )
    if options.resume and loop_finished(setup.run_dir):  # the loop already ran (here, or on another machine)
        result = LoopResult.load(setup.run_dir)
        plan = read_plan(setup.run_dir)
        log(f"the training loop of this run already finished ({result.steps} steps): registering it")
        return LoopPlan(spec, tuple(plan["target_modules"]), loop, (), plan["examples"], finished=result)
    if models.student is None:
        models.student = load_causal_lm(setup.base, dtype=train_dtype())
    model, tokenizer = models.student
    encoded, encode_stats = encode_examples(
        list(raft.examples), tokenizer, max_seq_len=cfg.max_seq_len,
        max_passage_chars=settings.answering.max_passage_chars,
    )
    notes: tuple[str, ...] = ()
    if encode_stats["too_long"] or encode_stats["distractors_dropped"]:
        notes = (f"fit to max_seq_len {cfg.max_seq_len}: {encode_stats['distractors_dropped']} "
                 f"distractor(s) dropped, {encode_stats['too_long']} example(s) too long",)
    targets = tuple(spec.target_modules or default_target_modules(model))
    write_plan(setup.run_dir, encoded, base=setup.base, lora=replace(spec, target_modules=targets), loop=loop,
               pad_id=tokenizer.pad_token_id)
    log(f"{len(encoded)} training examples, {sum(len(e.input_ids) for e in encoded)} tokens")
    return LoopPlan(spec, targets, loop, tuple(encoded), len(encoded), notes=notes)


def train_adapter(settings: Settings, options: TrainOptions, setup: RunSetup, plan: LoopPlan,
                  models: LoadedModels, log) -> TrainedLoop:
    """6. LoRA (+ token-level KD where the teacher shares the student's tokenizer), here or on several GPUs."""
    from slm.training.lora import attach_lora, train_lora
    from slm.training.prepared import launch_prepared

    cfg = settings.training
    if plan.finished is not None:
        return TrainedLoop(plan.finished)
    if options.gpus > 1:  # each process loads the base; this one only prepared
        models.release()
        notes = ("token-level KD skipped: not applied on several GPUs",) if cfg.kd_weight > 0 else ()
        log(f"training on {options.gpus} processes ({cfg.distributed}): "
            f"torchrun --nproc_per_node {options.gpus} -m slm.training.prepared {setup.run_dir}")
        return TrainedLoop(launch_prepared(setup.run_dir, options.gpus), notes)
    model, tokenizer = models.student
    peft_model = attach_lora(model, replace(plan.spec, target_modules=plan.targets), seed=cfg.seed)
    distiller, notes = None, ()
    if cfg.kd_weight > 0:
        distiller, message = distiller_for(peft_model, tokenizer, models.teacher, setup.teacher_spec, setup.base,
                                           cfg.kd_weight, cfg.kd_top_k)
        notes = (message,)
    result = train_lora(peft_model, list(plan.encoded), plan.loop, setup.run_dir, pad_id=tokenizer.pad_token_id,
                        resume=options.resume, distiller=distiller, progress=options.progress)
    return TrainedLoop(result, notes)


def register_adapter(settings: Settings, options: TrainOptions, kb: Any, setup: RunSetup, qa: QAData,
                     raft: RaftData, plan: LoopPlan, trained: TrainedLoop, log) -> Registration:
    """7. Register (promote only when asked, or when the gate finds it better than the served version)."""
    from slm.adapters.registry import AdapterInfo, Registry

    cfg, result = settings.training, trained.result
    info = AdapterInfo(
        base=setup.base,
        teacher=f"user data {options.data_file}" if options.data_file else setup.teacher_spec,
        audiences=tuple(raft.audiences),
        data_hash=qa.data_hash,
        data_examples=len(qa.examples),
        training={**asdict(cfg), **result.config, "max_passage_chars": settings.answering.max_passage_chars},
        lora=asdict(plan.spec) | {"target_modules": list(plan.targets)},
        generation=dict(qa.generation),
        eval_qa=tuple(str(p) for p in setup.eval_files),
        exclude_docs=tuple(setup.exclude),
        run_dir=str(setup.run_dir),
        report={"steps": result.steps, "tokens": result.tokens, "tokens_per_second": result.tokens_per_second,
                "train_seconds": result.seconds, "loop_peak_memory_mb": result.peak_memory_mb,
                "processes": result.world, "losses": list(result.losses)},
    )
    registry = Registry(Path(kb.path) / "adapters")
    entry = registry.register(result.adapter_dir, info)
    if options.promote:
        registry.promote(entry.version)
        return Registration(entry.version, entry.path, True)
    if not options.gate:
        return Registration(entry.version, entry.path, False)
    from slm.training.gating import gate_new_version

    log(f"gating {entry.version}: evaluating it against the served version")
    decision = gate_new_version(settings, kb, entry.version, list(setup.eval_files), setup.run_dir / "gate-eval",
                                limit=options.gate_limit, tolerance=options.gate_tolerance,
                                progress=options.progress)
    note = ("gate: promoted — " if decision.promote else "gate: not promoted — ") + "; ".join(decision.reasons)
    return Registration(entry.version, entry.path, decision.promote, (note,))


def finish_run(run_dir: Path, version: str) -> None:
    """Cleanup: mark the run done (nothing left to resume) and drop its loop checkpoints."""
    (run_dir / DONE_FILE).write_text(json.dumps({"version": version}), encoding="utf-8")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _report(setup: RunSetup, qa: QAData, raft: RaftData, plan: LoopPlan, trained: TrainedLoop,
            registered: Registration, notes: tuple[str, ...]) -> TrainReport:
    result = trained.result
    losses = result.losses or (float("nan"),)
    return TrainReport(
        version=registered.version, promoted=registered.promoted, run_dir=setup.run_dir,
        adapter_dir=registered.path, examples=plan.examples, abstain_examples=raft.abstain_examples,
        tokens=result.tokens, answer_tokens=result.answer_tokens, tokens_per_second=result.tokens_per_second,
        train_seconds=result.seconds, wall_seconds=time.perf_counter() - setup.started,
        peak_memory_mb=max(peak_memory_mb(), result.peak_memory_mb),
        steps=result.steps, loss_first=losses[0], loss_last=losses[-1], loss_min=min(losses),
        data_hash=qa.data_hash, audiences=raft.audiences, notes=notes, generation=dict(qa.generation),
    )


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


def _write_raft(raft, path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for r in raft:
            record = {"id": r.id, "question": r.question, "passages": [c.id for c in r.passages], "target": r.target}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
