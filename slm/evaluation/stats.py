"""Bootstrap confidence intervals for metric values, and a paired bootstrap for the difference of two variants.

Every metric is a ratio of per-question sums (a mean is a ratio with denominator 1 per question), so
resampling questions and recomputing the ratio gives intervals for means, precisions and recalls alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric value with its bootstrap interval; value None when the metric is undefined."""

    value: float | None
    low: float | None
    high: float | None
    n: int  # questions that contribute (non-zero denominator)


@dataclass(frozen=True)
class Difference:
    """Paired difference a - b over the same questions, its interval, and whether it is real."""

    metric: str
    a: str
    b: str
    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n: int

    @property
    def verdict(self) -> str:
        """'real' when the interval excludes zero, 'noise' when it straddles it, 'n/a' when undefined."""
        if self.diff is None or self.low is None or self.high is None:
            return "n/a"
        if self.low > 0 or self.high < 0:
            return "real"
        return "noise"


def _arrays(numerators: Sequence[float], denominators: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    num = np.asarray(numerators, dtype=np.float64)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError("numerators and denominators must have the same length")
    return num, den


def _resample(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _ratios(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """sum(num)/sum(den) with a percentile bootstrap interval over questions (den None: a mean)."""
    num, den = _arrays(numerators, denominators)
    contributing = int((den > 0).sum())
    if contributing == 0:
        return Estimate(None, None, None, 0)
    value = float(num.sum() / den.sum())
    if resamples <= 0 or len(num) < 2:
        return Estimate(value, value, value, contributing)
    stats = _ratios(num, den, _resample(len(num), resamples, seed))
    stats = stats[~np.isnan(stats)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha]) if stats.size else (value, value)
    return Estimate(value, float(low), float(high), contributing)


def bootstrap_mean(values: Sequence[float], **kwargs) -> Estimate:
    return bootstrap_ratio(values, None, **kwargs)


def paired_bootstrap(
    metric: str,
    a: str,
    b: str,
    num_a: Sequence[float],
    den_a: Sequence[float] | None,
    num_b: Sequence[float],
    den_b: Sequence[float] | None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Difference:
    """Difference of metric(a) - metric(b) over the same questions, resampled together (paired).

    The p-value is two-sided: twice the smaller share of resamples on either side of zero.
    """
    na, da = _arrays(num_a, den_a)
    nb, db = _arrays(num_b, den_b)
    if na.shape != nb.shape:
        raise ValueError("a paired bootstrap needs both variants scored on the same questions")
    if da.sum() == 0 or db.sum() == 0:
        return Difference(metric, a, b, None, None, None, None, 0)
    n = int(((da > 0) | (db > 0)).sum())
    diff = float(na.sum() / da.sum() - nb.sum() / db.sum())
    if resamples <= 0 or len(na) < 2:
        return Difference(metric, a, b, diff, diff, diff, None, n)
    idx = _resample(len(na), resamples, seed)
    deltas = _ratios(na, da, idx) - _ratios(nb, db, idx)
    deltas = deltas[~np.isnan(deltas)]
    if deltas.size == 0:
        return Difference(metric, a, b, diff, None, None, None, n)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(deltas, [alpha, 1 - alpha])
    if np.all(deltas == 0):
        p_value = 1.0
    else:
        p_value = float(min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())))
    return Difference(metric, a, b, diff, float(low), float(high), p_value, n)
