"""`slm retrain`: one pass of the retraining pipeline (or `--watch`, or `--history`); exit codes tell a
scheduler what happened (0 nothing changed, 3 index only, 4 promoted, 5 rejected, 1 failed, 75 locked)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slm.cli.common import ConfigOption, KbOption, settings_from


def register(app: typer.Typer) -> None:
    app.command()(retrain)


def _pipeline():
    """The retraining pass (slm.retraining.run); imported late, it pulls in the trainer."""
    from slm.retraining import run

    return run


def retrain(
    root: Optional[str] = typer.Option(
        None, "--root", help="Source of the documents: a folder, https://…, s3://…, git+…@ref "
        "(default: the source the KB was last ingested from, with its options)."
    ),
    watch: bool = typer.Option(False, "--watch", help="Keep polling the source folder; run a pass on each change."),
    history: bool = typer.Option(False, "--history", help="Print the reports of past runs and exit."),
    qa: Optional[Path] = typer.Option(None, "--qa", help="Held-out QA JSONL the new adapter is gated on."),
    force_train: bool = typer.Option(False, "--force-train", help="Train a new adapter even below the thresholds."),
    interval: Optional[float] = typer.Option(None, "--interval", help="Seconds between polls (--watch)."),
    limit: int = typer.Option(10, "--limit", help="How many runs --history prints."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Follow document changes: detect → re-ingest → retrain? → evaluate → promote? (see docs/retraining.md)."""
    settings = settings_from(kb, config, {"retrain.watch_interval_s": interval})
    if history:
        _print_history(settings, limit)
        return
    if qa is not None and not qa.is_file():
        typer.secho(f"error: --qa {qa}: no such file", fg="red", err=True)
        raise typer.Exit(2)
    pipeline = _pipeline()
    log = (lambda m: None) if quiet else (lambda m: typer.secho(m, dim=True, err=True))
    if watch:
        pipeline.watch(settings, root=root, log=lambda m: typer.secho(m, err=True),
                       qa_file=qa, force_train=force_train, progress=not quiet)
        return
    record = pipeline.run_pass(settings, root=root, qa_file=qa, force_train=force_train, progress=not quiet, log=log)
    for line in record.lines():
        typer.echo(line)
    raise typer.Exit(record.outcome.exit_code if record.outcome else 1)


def _print_history(settings, limit: int) -> None:
    from slm.kb.local import KnowledgeBase
    from slm.retraining.history import RetrainHistory

    with KnowledgeBase.open(Path(settings.kb), settings, check_embedder=False) as kb:
        history = RetrainHistory(kb.store)
        try:
            runs = history.runs(limit)
        finally:
            history.close()
    if not runs:
        typer.echo("no retraining runs yet: run `slm retrain`")
        return
    for record in runs:
        for line in record.lines():
            typer.echo(line)
        typer.echo("")
