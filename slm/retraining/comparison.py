"""Judge a candidate adapter against the served model: both answer the same held-out questions through
`slm.evaluation.evaluate` (the same code as `slm eval`); the summary's metrics feed the gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm.config import Settings

SERVED = "current"


@dataclass(frozen=True)
class Comparison:
    served: dict[str, float | None]
    candidate: dict[str, float | None]
    questions: int
    report_dir: Path


def compare_with_served(
    settings: Settings,
    kb: Any,
    candidate: str,
    qa_file: Path,
    out: Path,
    *,
    max_new_tokens: int,
    factory: Any = None,
    progress: bool = False,
) -> Comparison:
    """Evaluate `current` (the promoted adapter, else the base model) and `candidate` on `qa_file`."""
    from slm.evaluation.evaluate import evaluate
    from slm.evaluation.runner import EvalOptions

    options = EvalOptions(max_new_tokens=max_new_tokens, closed_book=0, resamples=200, progress=progress)
    result = evaluate(settings, [qa_file], f"{SERVED},{candidate}", out, kb=kb, options=options, factory=factory,
                      command=f"slm retrain (gate {candidate})", plots=False)
    variants = result.summary["variants"]
    return Comparison(
        served=dict(variants[SERVED]["metrics"]),
        candidate=dict(variants[candidate]["metrics"]),
        questions=int(result.summary["qa"]["questions"]),
        report_dir=Path(out),
    )
