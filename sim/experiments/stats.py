"""Statistics across seeds: paired differences with t-intervals, ratios of means with a paired
bootstrap interval. Plain numpy (no scipy): the Student t quantile is computed here from the
regularized incomplete beta function.

Every function returns plain floats (NaN when a figure is undefined) so results tables stay
tidy; ``n`` is always returned so a reader can see how many seeds an interval rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20_240_311  # fixed: intervals are reproducible byte for byte


# ------------------------------------------------------------------ Student t quantile


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t (bisection on the CDF; |error| < 1e-10)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-11:
            break
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------ intervals


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval (NaN bounds when ``n`` is too small)."""

    estimate: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self, prefix: str = "") -> dict[str, float | int | str]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}

    def text(self, fmt: str = "{:,.3g}") -> str:
        """'est [low, high]', 'est (n/a: 1 seed)' or 'n/a'."""
        if math.isnan(self.estimate):
            return "n/a"
        est = fmt.format(self.estimate)
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{est} (CI n/a, n={self.n})"
        return f"{est} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=float)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean with a Student t interval across seeds (n/a below 2 values)."""
    x = _clean(values)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "t")
    m = float(x.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, n, "t")
    half = t_quantile(0.5 + confidence / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n, "t")


def paired_difference(
    treated: Sequence[float], control: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """Mean of the paired differences ``treated[i] - control[i]`` with a t interval.

    Pairs where either value is NaN are left out."""
    a, b = _clean(treated), _clean(control)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    ok = ~(np.isnan(a) | np.isnan(b))
    iv = mean_ci(a[ok] - b[ok], confidence)
    return Interval(iv.estimate, iv.low, iv.high, iv.n, "paired t")


def ratio_of_means(
    numerator: Sequence[float],
    denominator: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """``mean(numerator) / mean(denominator)`` over paired seeds, with a paired percentile
    bootstrap interval (seeds resampled with replacement, the same draw for both samples).

    NaN when the denominator's mean is 0; resamples whose denominator mean is 0 are dropped
    (the method string says how many). The interval is n/a below 2 seeds."""
    a, b = _clean(numerator), _clean(denominator)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    n = len(a)
    if n == 0 or b.mean() == 0:
        return Interval(math.nan, math.nan, math.nan, n, "ratio of means, paired bootstrap")
    est = float(a.mean() / b.mean())
    if n < 2:
        return Interval(est, math.nan, math.nan, n, "ratio of means, paired bootstrap")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    num, den = a[idx].mean(axis=1), b[idx].mean(axis=1)
    keep = den != 0
    ratios = num[keep] / den[keep]
    method = "ratio of means, paired bootstrap"
    if (~keep).any():
        method += f" ({int((~keep).sum())} of {resamples} resamples with a zero baseline dropped)"
    if len(ratios) == 0:
        return Interval(est, math.nan, math.nan, n, method)
    alpha = 1 - confidence
    lo, hi = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return Interval(est, float(lo), float(hi), n, method)
