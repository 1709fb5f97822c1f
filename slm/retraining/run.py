"""One retraining pass, top to bottom: detect changed documents → re-ingest only those → policy (index
only, or a new adapter) → train on the changed documents plus a replay sample → evaluate the candidate
against the served model on held-out questions → promote, or reject and keep serving the old one.

Every stage is recorded in the KB (`slm retrain --history`); a run killed at any stage leaves the last
promoted adapter serving and the index consistent, and the next run picks up where it stopped.
The stages live in the sibling modules; this one calls them in order. `slm retrain` and
`pipelines/retrain.py` run it.
"""

from __future__ import annotations

import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from slm.config import Settings
from slm.kb.connectors.spec import SourceSpec, as_spec, stored_spec
from slm.errors import KnowledgeBaseError, RegistryError
from slm.retraining.changes import ChangeSet, SourceWatcher, changes_since, chunk_counts, detect_changes
from slm.retraining.history import INTERRUPTED, Outcome, RetrainHistory, RunRecord
from slm.retraining.hooks import at_stage
from slm.retraining.lock import RetrainLocked, retrain_lock
from slm.retraining.policy import PolicyInput, changed_share, decide

Log = Callable[[str], None]
# Bootstrap resamples of the gate's report: the gate reads the point metrics only, so the report's intervals
# are for a reader and a coarse 200 (slm eval's default is 2000) is enough.
RESAMPLES = 200


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_pass(
    settings: Settings,
    *,
    root: "SourceSpec | Path | str | None" = None,
    qa_file: Path | None = None,
    force_train: bool = False,
    trainer: Callable[..., Any] | None = None,
    factory: Any = None,
    progress: bool = False,
    log: Log = _stderr,
) -> RunRecord:
    """One pass; returns the stored run report (its `.outcome.exit_code` is what the CLI exits with)."""
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase
    from slm.adapters.registry import Registry

    kb_path = Path(settings.kb)
    if root is None and not (kb_path / "store.sqlite").is_file():
        raise KnowledgeBaseError(f"no knowledge base at {kb_path}: pass --root FOLDER for the first run")
    kb_path.mkdir(parents=True, exist_ok=True)
    with retrain_lock(kb_path), KnowledgeBase.open(kb_path, settings, create=root is not None) as kb:
        history = RetrainHistory(kb.store)
        registry = Registry(kb_path / "adapters")
        cfg = settings.retrain
        interrupted = history.mark_interrupted()
        previous = _settle(interrupted[-1], registry, history, log) if interrupted else None
        record = history.save(RunRecord(run_id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
                                        started=time.time(), served_before=_served(registry),
                                        resumed_from=previous.run_id if previous else None))
        run_dir = kb_path / "retrain" / record.run_id

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            nonlocal record
            record = history.update(record, stage=name)
            at_stage(name)
            t0 = time.perf_counter()
            yield
            record = history.update(record, timings={**record.timings, name: round(time.perf_counter() - t0, 3)})

        def finish(outcome: Outcome, **changes: Any) -> RunRecord:
            nonlocal record
            record = history.update(record, status=outcome.status, stage="done", finished=time.time(),
                                    served_after=_served(registry), **changes)
            return record

        try:
            # 1. detect: fingerprints of the source's documents (bytes hashes, ETags, blob ids) against the store
            with stage("detect"):
                source = as_spec(root) if root else stored_spec(kb)
                if source is None or (source.kind == "folder" and not Path(source.uri).exists()):
                    raise KnowledgeBaseError(f"source folder '{source.uri if source else ''}' not found: "
                                             "pass --root SOURCE")
                changes = detect_changes(source, kb)
                record = history.update(record, root=str(Path(source.uri).resolve()) if source.kind == "folder"
                                        else source.uri, changes=changes)
                log(f"changes: {changes.describe()}")

            # 2. re-ingest only what changed (deleted documents leave every index in the same commit)
            with stage("ingest"):
                if not changes.empty:
                    report = ingest(source, kb, progress=progress, on_stage=lambda s: at_stage(f"ingest:{s}"))
                    log(f"index: generation {report.generation}, {report.chunks_written} chunks written, "
                        f"{report.embedded} embedded, {len(report.failed)} failed")

            # 3. policy: weigh everything that changed since the last training
            with stage("policy"):
                last = history.last_decided()
                cutoff, trained_at = _last_training(last, registry)
                pending = changes_since(kb.store, cutoff)
                changed, total = chunk_counts(kb.store, pending.with_text)
                state = PolicyInput(pending, changed, total, (time.time() - trained_at) / 86400 if trained_at else None)
                decision = decide(state, cfg, force=force_train)
                record = history.update(record, pending=pending, changed_share=round(changed_share(state), 6),
                                        policy=decision.reasons)
                for reason in decision.reasons:
                    log(f"policy: {reason}")
            if not decision.train:
                return finish(Outcome.NOTHING if changes.empty else Outcome.INDEX)

            # 4. train a candidate on the changed documents + a replay sample (or pick up an interrupted one)
            with stage("train"):
                from slm.retraining.selection import held_out_set, training_selection

                # --force-train with nothing pending: refresh on the whole corpus
                learn = pending if not (pending.empty and force_train) else \
                    ChangeSet(modified=tuple(d.id for d in kb.documents()))
                reuse = _reusable_candidate(previous, registry, changes)
                cutoff_now = reuse.data_cutoff if reuse and reuse.data_cutoff else time.time()
                user_qa = Path(qa_file or cfg.qa_file) if (qa_file or cfg.qa_file) else None
                held = held_out_set(kb, learn, run_dir, qa_file=user_qa, questions=cfg.eval_questions,
                                    feedback=cfg.eval_feedback, seed=settings.training.seed)
                selection = training_selection(kb, learn, held_out=held.chunk_ids, replay_ratio=cfg.replay_ratio,
                                               max_chunks=settings.training.max_chunks, seed=settings.training.seed)
                record = history.update(record, data_cutoff=cutoff_now, train_chunks=len(selection.changed),
                                        replay_chunks=len(selection.replay), eval_questions=held.questions)
                if reuse is not None:
                    candidate = reuse.candidate
                    log(f"train: reusing candidate {candidate} of interrupted run {reuse.run_id}")
                elif not selection.changed:
                    record = history.update(record, policy=(*record.policy, "no changed chunk is long enough to "
                                                            "write training questions for: index only"))
                    return finish(Outcome.NOTHING if changes.empty else Outcome.INDEX)
                else:
                    candidate = _train(settings, kb, selection, held, previous, changes, trainer, progress, log)
                record = history.update(record, candidate=candidate)

            # 5. evaluate candidate and served model on the same held-out questions; the gate decides
            with stage("evaluate"):
                from slm.evaluation.candidate import compare_with_served, measured
                from slm.retraining.gate import not_worse

                result = compare_with_served(settings, kb, candidate, [held.path], run_dir / "eval",
                                             command=f"slm retrain (gate {candidate})",
                                             max_new_tokens=cfg.eval_max_new_tokens, resamples=RESAMPLES,
                                             factory=factory, progress=progress)
                verdict = not_worse(result.candidate, result.served, metrics=cfg.gate_metrics,
                                    tolerance=cfg.tolerance)
                record = history.update(record, metrics_before=result.served, metrics_after=result.candidate,
                                        gate=verdict.reasons, promote=verdict.promote,
                                        eval_dir=str(result.report_dir))
                log(f"gate: {record.gate[0]}")

            # 6. promote (an atomic pointer switch servers pick up) or reject, keeping the report
            with stage("promote"):
                registry.set_metrics(candidate, measured(record.metrics_after))
                if record.promote:
                    registry.promote(candidate)
                else:
                    registry.reject(candidate, {"reasons": list(record.gate), "run": record.run_id,
                                                "metrics_served": record.metrics_before,
                                                "metrics_candidate": record.metrics_after,
                                                "eval_dir": record.eval_dir})
            return finish(Outcome.PROMOTED if record.promote else Outcome.REJECTED)
        except BaseException as exc:
            finish(Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            history.close()


def watch(
    settings: Settings,
    *,
    root: "SourceSpec | Path | str | None" = None,
    max_passes: int | None = None,
    log: Log = _stderr,
    **pass_options: Any,
) -> list[RunRecord]:
    """Poll the source folder (size + mtime) every retrain.watch_interval_s seconds; run a pass when something moved.
    A failing pass is logged and retried on the next change; Ctrl-C stops."""
    from slm.kb.local import KnowledgeBase

    if root is None:
        with KnowledgeBase.open(Path(settings.kb), settings) as kb:
            root = stored_spec(kb)
    if root is None:
        raise KnowledgeBaseError("nothing to watch: pass --root SOURCE (the KB records no source yet)")
    watcher = SourceWatcher(root, settings)
    every = settings.retrain.watch_interval_s
    records: list[RunRecord] = []
    log(f"watching {watcher.spec.uri} every {every:g}s")
    while max_passes is None or len(records) < max_passes:
        if watcher.changed():
            try:
                record = run_pass(settings, root=root, log=log, **pass_options)
                records.append(record)
                log(f"pass {record.run_id}: {record.status}")
            except RetrainLocked as exc:
                log(f"skipped: {exc}")
                watcher = SourceWatcher(root, settings)  # look again next time
            except Exception as exc:  # noqa: BLE001 - a watcher outlives one bad pass; the report holds the error
                log(f"pass failed: {type(exc).__name__}: {exc}")
                records.append(RunRecord(run_id="failed", started=time.time(), status=Outcome.FAILED.status,
                                         error=str(exc)))
        if max_passes is not None and len(records) >= max_passes:
            break
        time.sleep(every)
    return records


# ------------------------------------------------------------------ small steps of the recipe


def _served(registry: Any) -> str | None:
    try:
        current = registry.current()
    except RegistryError:
        return None
    return current.version if current else None


def _last_training(last: RunRecord | None, registry: Any) -> tuple[float, float | None]:
    """(cutoff, time of the last training): changes logged after the cutoff are not in any adapter yet."""
    if last is not None and last.data_cutoff:
        return last.data_cutoff, last.data_cutoff
    try:
        current = registry.current()
    except RegistryError:
        current = None
    if current is not None and current.created:
        try:
            created = datetime.fromisoformat(current.created).timestamp()
            return created, created
        except ValueError:
            pass
    return 0.0, None


def _settle(previous: RunRecord, registry: Any, history: RetrainHistory, log: Log) -> RunRecord:
    """An interrupted run whose gate had decided: carry the decision out (promote is idempotent; the
    pointer switch is the last, atomic step) and record the run as decided, so its data counts as trained."""
    if previous.promote is None or not previous.candidate:
        return previous
    try:
        entry = registry.get(previous.candidate)
    except RegistryError:
        return previous
    if previous.promote:
        if _served(registry) != entry.version and entry.status != "rejected":
            registry.promote(entry.version)
        log(f"completed the promotion of {entry.version} decided by interrupted run {previous.run_id}")
        status = Outcome.PROMOTED.status
    else:
        if entry.status != "rejected" and _served(registry) != entry.version:
            registry.reject(entry.version, {"reasons": list(previous.gate), "run": previous.run_id})
        status = Outcome.REJECTED.status
    return history.update(previous, status=status, finished=time.time(), served_after=_served(registry),
                          error=f"interrupted at stage '{previous.stage}'; decision completed by the next run")


def _reusable_candidate(previous: RunRecord | None, registry: Any, changes: ChangeSet) -> RunRecord | None:
    """An interrupted run's registered candidate, if no document changed since and it is still undecided."""
    if previous is None or previous.status != INTERRUPTED or not previous.candidate or not changes.empty:
        return None
    if previous.promote is not None:
        return None
    try:
        entry = registry.get(previous.candidate)
    except RegistryError:
        return None
    return previous if entry.status == "candidate" else None


def _train(settings, kb, selection, held, previous, changes, trainer, progress, log) -> str:
    """Run the training recipe on the selected chunks; resume its checkpoint if the last run died training."""
    import dataclasses

    from slm.training.recipe import TrainOptions, run_training

    unfinished = [p for p in (Path(kb.path) / "training" / "runs").glob("run-*") if not (p / "done.json").exists()]
    resume = bool(previous and previous.stage == "train" and changes.empty and unfinished)
    options = TrainOptions(eval_qa=(held.path,), only_chunks=selection.chunk_ids, max_steps=settings.retrain.max_steps,
                           resume=resume, promote=False, progress=progress)
    # the selection is already capped at training.max_chunks: every chunk in it gets its questions
    settings = dataclasses.replace(settings, training=dataclasses.replace(settings.training,
                                                                          max_chunks=len(selection.chunk_ids)))
    log(f"train: {len(selection.changed)} changed + {len(selection.replay)} replayed chunks"
        + (" (resuming the interrupted training run)" if resume else ""))
    report = (trainer or run_training)(settings, options, kb=kb, log=log)
    return report.version
