"""Gated promotion: evaluate a new adapter against the one being served, promote only if it is better."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from slm.errors import TrainingError
from slm.adapters.registry import GateDecision, Registry, gate
from slm.evaluation.candidate import Comparison, compare_with_served, measured

# Generator-dependent metrics of slm.evaluation (retrieval metrics do not change with the adapter).
GATE_METRICS = ("answer_f1", "answer_rouge_l", "citation_accuracy")


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
    compare: Callable[..., Comparison] = compare_with_served,
) -> GateDecision:
    """Evaluate `current` (the served adapter, or the base model) and `version` on the same questions,
    then promote `version` if `slm.adapters.registry.gate` says it is better, else mark it rejected."""
    if not qa_paths:
        raise TrainingError("gated promotion needs evaluation questions: pass --eval-qa FILE")
    result = compare(settings, kb, version, list(qa_paths), out, command="slm train --gate", limit=limit,
                     progress=progress)
    candidate, served = measured(result.candidate), measured(result.served)
    usable = [m for m in metrics if m in candidate and m in served]
    decision = gate(candidate, served, tolerance=tolerance, metrics=usable or None)
    registry = Registry(Path(kb.path) / "adapters")
    registry.set_metrics(version, candidate)
    if decision.promote:
        registry.promote(version)
    else:
        registry.reject(version, {"reasons": list(decision.reasons), "compared_with": served})
    return decision
