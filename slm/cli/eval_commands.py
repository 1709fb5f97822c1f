"""`slm eval`: measure the knowledge base and its model on question files, and write a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from slm.cli.common import ConfigOption, KbOption, parse_audiences, settings_from

DEFAULT_VARIANTS = "extractive,current"


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        qa: List[Path] = typer.Option(..., "--qa", help="JSONL question file (repeat to combine, e.g. in- and out-of-domain)."),
        variants: str = typer.Option(
            DEFAULT_VARIANTS, "--variants",
            help="Comma list: extractive, base, current, v<N>; retrieval dense, bm25, hybrid, rerank; combine with + (current+bm25).",
        ),
        out: Path = typer.Option(..., "--out", help="Folder for summary.json, report.md/.html, plots, per_question.jsonl."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N questions of each file."),
        audience: Optional[str] = typer.Option(None, "--audience", help="Evaluate as this audience (comma list); default: trusted, sees all."),
        max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Generation budget per answer (keeps CPU runs short)."),
        closed_book: int = typer.Option(
            40, "--closed-book",
            help="Ask each model with no retrieval on N answerable questions spread over the set (-1 = all, 0 = off).",
        ),
        baseline: Optional[str] = typer.Option(None, "--baseline", help="Variant the others are compared with (default base, else extractive)."),
        resamples: int = typer.Option(2000, "--resamples", help="Bootstrap resamples for the confidence intervals."),
        seed: int = typer.Option(0, "--seed"),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw PNG plots (matplotlib)."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        kb: Optional[Path] = KbOption,
        config: Optional[Path] = ConfigOption,
    ) -> None:
        """Score retrieval, answers, citations, abstention and latency per variant, with 95% CIs."""
        from slm.evaluation.evaluate import evaluate
        from slm.evaluation.runner import EvalOptions

        settings = settings_from(kb, config)
        options = EvalOptions(
            max_new_tokens=max_new_tokens,
            closed_book=None if closed_book < 0 else closed_book,
            resamples=resamples,
            seed=seed,
            baseline=baseline,
            progress=progress,
        )
        command = "slm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        result = evaluate(
            settings, qa, variants, out, limit=limit, audiences=parse_audiences(audience),
            options=options, command=command, plots=plots,
        )
        _print_summary(result)

    return None


def _print_summary(result) -> None:
    from slm.evaluation.report import fmt_estimate

    s = result.summary
    qa = s["qa"]
    typer.echo(f"{qa['questions']} questions ({qa['answerable']} answerable), {len(qa['bad_lines'])} bad line(s) skipped")
    for line in qa["bad_lines"][:10]:
        typer.secho(f"  skipped {line}", fg="yellow", err=True)
    for score in result.scores:
        parts = [f"{m}={fmt_estimate(score.estimates.get(m)).split(' n=')[0]}"
                 for m in ("source_hit@5", "source_mrr", "answer_f1", "citation_accuracy", "abstention_recall")
                 if score.estimates.get(m) is not None and score.estimates[m].value is not None]
        typer.echo(f"  {score.name:<18} " + "  ".join(parts))
    for d in result.comparisons:
        if d.metric in ("answer_f1", "source_mrr", "citation_accuracy") and d.diff is not None:
            typer.echo(f"  {d.a} - {d.b} {d.metric}: {d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}] {d.verdict}")
    for note in s["notes"]:
        typer.secho(f"  note: {note}", fg="cyan")
    typer.echo(f"wall time {s['wall_seconds']:.0f} s; report: {result.files.html}")
