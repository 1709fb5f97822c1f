"""The one promotion gate: a candidate's metrics against the served model's, judged by a named rule
(`better`: training's gate, `not_worse`: retraining's), with one convention for which metrics fall."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from slm.errors import RegistryError

GateRule = Literal["better", "not_worse"]

# Metric names that are lower-is-better; every other metric is higher-is-better.
_LOWER_IS_BETTER = re.compile(r"(latency|_s$|seconds|loss|error|hallucinat|uncited|wrong|perplexity|leak)", re.I)


def lower_is_better(name: str, also: Sequence[str] = ()) -> bool:
    """Whether a smaller value of metric `name` is an improvement (named in `also`, or by its name)."""
    return name in also or bool(_LOWER_IS_BETTER.search(name))


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
class GateVerdict:
    promote: bool
    deltas: tuple[MetricDelta, ...]
    reasons: tuple[str, ...]


def metric_value(value: object) -> float | None:
    """A report value as a number, or None (missing, not numeric, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        return None
    return float(value)


def compare(
    candidate: Mapping[str, object],
    served: Mapping[str, object],
    metrics: Sequence[str],
    *,
    tolerance: float,
    lower: Sequence[str] = (),
) -> tuple[MetricDelta, ...]:
    """Each metric's served → candidate change, judged beyond `tolerance` in the metric's direction."""
    deltas: list[MetricDelta] = []
    for name in metrics:
        new, old = metric_value(candidate.get(name)), metric_value(served.get(name))
        if new is None or old is None:
            deltas.append(MetricDelta(name, old, new, "not measured"))
            continue
        gain = (old - new) if lower_is_better(name, lower) else (new - old)
        verdict = "better" if gain > tolerance else "worse" if gain < -tolerance else "same"
        deltas.append(MetricDelta(name, old, new, verdict))
    return tuple(deltas)


def judge(
    candidate: Mapping[str, object],
    served: Mapping[str, object] | None,
    *,
    rule: GateRule,
    tolerance: float,
    metrics: Sequence[str] | None = None,
    lower: Sequence[str] = (),
) -> GateVerdict:
    """Promote or not. `better`: better than `tolerance` on at least one metric and worse on none (every
    named metric must be in both reports). `not_worse`: worse on none, at least one measured. No served
    report: under `better` the candidate wins (nothing to beat), under `not_worse` nothing is measured so it
    loses. `metrics` None: the numeric metrics both reports share."""
    if not served and rule == "better":
        return GateVerdict(True, (), ("no current version to compare with",))
    served = served or {}
    names = list(metrics) if metrics else sorted(
        k for k in candidate if metric_value(candidate[k]) is not None and metric_value(served.get(k)) is not None)
    deltas = compare(candidate, served, names, tolerance=tolerance, lower=lower)
    lines = tuple(d.line() for d in deltas)
    measured = [d for d in deltas if d.verdict != "not measured"]
    worse = [d.name for d in measured if d.verdict == "worse"]
    if rule == "better":
        missing = [d.name for d in deltas if d.verdict == "not measured"]
        if missing:
            raise RegistryError(f"cannot gate on metric '{missing[0]}': it is missing from one of the reports")
        if not names:
            return GateVerdict(False, deltas, ("no metric in common between the two reports",))
        better = any(d.verdict == "better" for d in measured)
        return GateVerdict(better and not worse, deltas, lines)
    if rule != "not_worse":
        raise ValueError(f"unknown gate rule {rule!r} (better, not_worse)")
    if not measured:
        reason = "rejected: none of the gate metrics could be measured on the held-out questions"
        return GateVerdict(False, deltas, (reason, *lines))
    if worse:
        reason = f"rejected: worse than the served model beyond tolerance {tolerance:g} on " + ", ".join(worse)
        return GateVerdict(False, deltas, (reason, *lines))
    return GateVerdict(True, deltas, (f"promoted: not worse than the served model beyond tolerance {tolerance:g}", *lines))
