"""Gated promotion: evaluate a new adapter against the one being served, promote only if it is better."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from slm.errors import TrainingError
from slm.adapters.registry import GateDecision, Registry, gate

# Generator-dependent metrics of slm.evaluation (retrieval metrics do not change with the adapter).
GATE_METRICS = ("answer_f1", "answer_rouge_l", "citation_accuracy")


def _run_eval(settings, qa_paths, variants, out, *, kb, limit, progress) -> dict[str, Any]:
    from slm.evaluation.evaluate import evaluate
    from slm.evaluation.runner import EvalOptions

    result = evaluate(settings, qa_paths, variants, out, kb=kb, limit=limit, plots=False,
                      options=EvalOptions(closed_book=0, progress=progress), command="slm train --gate")
    return result.summary


def gate_new_version(
    settings: Any,
    kb: Any,
    version: str,
    qa_paths: Sequence[Path],
    out: Path,
    *,
    limit: int | None = 40,
    tolerance: float = 0.01,
    metrics: Sequence[str] = GATE_METRICS,
    progress: bool = True,
    run_eval: Callable[..., dict[str, Any]] = _run_eval,
) -> GateDecision:
    """Evaluate `current` (the served adapter, or the base model) and `version` on the same questions,
    then promote `version` if `slm.adapters.registry.gate` says it is better, else mark it rejected."""
    if not qa_paths:
        raise TrainingError("gated promotion needs evaluation questions: pass --eval-qa FILE")
    summary = run_eval(settings, list(qa_paths), ["current", version], out, kb=kb, limit=limit, progress=progress)
    variants = summary.get("variants", {})
    if version not in variants or "current" not in variants:
        raise TrainingError(f"the evaluation report has no results for 'current' and '{version}'")
    candidate = {k: v for k, v in variants[version]["metrics"].items() if v is not None}
    served = {k: v for k, v in variants["current"]["metrics"].items() if v is not None}
    usable = [m for m in metrics if m in candidate and m in served]
    decision = gate(candidate, served, tolerance=tolerance, metrics=usable or None)
    registry = Registry(Path(kb.path) / "adapters")
    registry.set_metrics(version, candidate)
    if decision.promote:
        registry.promote(version)
    else:
        registry.reject(version, {"reasons": list(decision.reasons), "compared_with": served})
    return decision
