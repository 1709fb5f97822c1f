"""The promotion gate for retraining: the candidate and the served model answer the same held-out
questions; the candidate is promoted unless a gate metric is worse by more than the tolerance
(`slm.adapters.gate.judge` with the `not_worse` rule)."""

from __future__ import annotations

from typing import Mapping, Sequence

from slm.adapters.gate import GateVerdict as GateResult
from slm.adapters.gate import MetricDelta, judge

__all__ = ["GateResult", "MetricDelta", "not_worse"]


def not_worse(
    candidate: Mapping[str, object],
    served: Mapping[str, object],
    *,
    metrics: Sequence[str],
    tolerance: float,
) -> GateResult:
    """Promote when no measured gate metric is worse by more than `tolerance`; at least one must be measured."""
    return judge(candidate, served, rule="not_worse", tolerance=tolerance, metrics=metrics)
