"""Judge a candidate adapter against the served model: both answer the same questions through
`slm.evaluation.evaluate` (the same code as `slm eval`); training's and retraining's gates both read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slm.config import Settings
from slm.errors import TrainingError
from slm.evaluation.runner import EvalOptions

SERVED = "current"  # the variant name of the promoted adapter, else the base model


@dataclass(frozen=True)
class Comparison:
    served: dict[str, float | None]  # the summary's metrics of each side (None: not measured)
    candidate: dict[str, float | None]
    questions: int
    report_dir: Path


def measured(metrics: dict[str, float | None]) -> dict[str, float]:
    """The metrics that have a value: what the registry records and the gate compares."""
    return {k: v for k, v in metrics.items() if v is not None}


def compare_with_served(
    settings: Settings,
    kb: Any,
    candidate: str,
    qa_files: Sequence[Path],
    out: Path,
    *,
    command: str,
    limit: int | None = None,
    max_new_tokens: int = EvalOptions.max_new_tokens,
    resamples: int = EvalOptions.resamples,
    factory: Any = None,
    progress: bool = False,
) -> Comparison:
    """Evaluate `current` and `candidate` on `qa_files` (at most `limit` questions), with no closed-book
    baseline (a gate compares answers with retrieval); the report lands in `out`."""
    from slm.evaluation.evaluate import evaluate

    options = EvalOptions(max_new_tokens=max_new_tokens, closed_book=0, resamples=resamples, progress=progress)
    result = evaluate(settings, list(qa_files), [SERVED, candidate], out, kb=kb, limit=limit, options=options,
                      factory=factory, command=command, plots=False)
    variants = result.summary.get("variants", {})
    if candidate not in variants or SERVED not in variants:
        raise TrainingError(f"the evaluation report in {out} has no results for '{SERVED}' and '{candidate}'")
    return Comparison(
        served=dict(variants[SERVED]["metrics"]),
        candidate=dict(variants[candidate]["metrics"]),
        questions=int(result.summary["qa"]["questions"]),
        report_dir=Path(out),
    )
