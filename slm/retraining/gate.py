"""The promotion gate for retraining: the candidate and the served model answer the same held-out
questions; the candidate is promoted unless a gate metric is worse by more than the tolerance."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

# Same convention as slm.registry.gate: these names are lower-is-better, everything else higher.
_LOWER_IS_BETTER = re.compile(r"(latency|_s$|seconds|loss|error|hallucinat|uncited|wrong|perplexity|leak)", re.I)


@dataclass(frozen=True)
class MetricDelta:
    name: str
    served: float | None
    candidate: float | None
    verdict: str  # better | worse | same | not measured

    def line(self) -> str:
        if self.served is None or self.candidate is None:
            return f"{self.name}: not measured"
        return f"{self.name}: {self.served:.4g} -> {self.candidate:.4g} ({self.verdict})"


@dataclass(frozen=True)
class GateResult:
    promote: bool
    deltas: tuple[MetricDelta, ...]
    reasons: tuple[str, ...]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        return None
    return float(value)


def not_worse(
    candidate: Mapping[str, object],
    served: Mapping[str, object],
    *,
    metrics: Sequence[str],
    tolerance: float,
) -> GateResult:
    """Promote when no measured gate metric is worse by more than `tolerance`; at least one must be measured."""
    deltas: list[MetricDelta] = []
    for name in metrics:
        new, old = _number(candidate.get(name)), _number(served.get(name))
        if new is None or old is None:
            deltas.append(MetricDelta(name, old, new, "not measured"))
            continue
        gain = (old - new) if _LOWER_IS_BETTER.search(name) else (new - old)
        verdict = "better" if gain > tolerance else "worse" if gain < -tolerance else "same"
        deltas.append(MetricDelta(name, old, new, verdict))
    measured = [d for d in deltas if d.verdict != "not measured"]
    worse = [d for d in measured if d.verdict == "worse"]
    if not measured:
        reason = "rejected: none of the gate metrics could be measured on the held-out questions"
        return GateResult(False, tuple(deltas), (reason, *(d.line() for d in deltas)))
    if worse:
        reason = (f"rejected: worse than the served model beyond tolerance {tolerance:g} on "
                  + ", ".join(d.name for d in worse))
        return GateResult(False, tuple(deltas), (reason, *(d.line() for d in deltas)))
    reason = f"promoted: not worse than the served model beyond tolerance {tolerance:g}"
    return GateResult(True, tuple(deltas), (reason, *(d.line() for d in deltas)))
