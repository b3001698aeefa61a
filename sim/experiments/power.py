"""Power of a design paired over seeds: the minimum detectable effect, the seeds a target needs,
and the note a run prints when it is under-powered.

An effect is estimated by the mean of ``n`` per-seed contrasts with standard deviation ``sd``
(:mod:`sim.experiments.factorial`), and tested with a two-sided one-sample t test at level
``alpha``. The **minimum detectable effect** (MDE) at power ``1 - beta`` is::

    MDE = (t_{1 - alpha/2, n-1} + t_{1 - beta, n-1}) * sd / sqrt(n)

the usual multiplier form (Bloom, "Minimum detectable effects", *Evaluation Review* 19(5), 1995):
a true effect of this size is detected (its interval excludes 0) with probability about
``1 - beta``. ``sd`` is the one observed in the run itself (an estimate: with few seeds the MDE
is itself uncertain). Below 2 seeds there is no SD, hence no MDE.

**Power target.** A run of ``liqsim amplify`` is adequately powered when, for every margin mode,
every main effect on each of :data:`TARGET.metrics` has an MDE of at most :data:`TARGET.share`
of that figure's mean in the frictionless baseline. A figure whose baseline mean is 0 (the
baseline has none of it, as the loss figures often) has no scale to take a share of and sets no
target: its MDE is reported in its own unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from sim.experiments.stats import t_quantile

ALPHA = 0.05
POWER = 0.80
#: Most seeds :func:`seeds_needed` will propose.
MAX_SEEDS_PROPOSED = 10_000


def minimum_detectable_effect(
    sd: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true effect a paired design of ``n`` seeds detects with probability
    ``power`` at two-sided level ``alpha``, given the per-seed contrasts' SD (NaN below 2
    seeds)."""
    if n < 2 or sd is None or math.isnan(sd):
        return math.nan
    df = n - 1
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * sd / math.sqrt(n)


def seeds_needed(
    sd: float, target: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The fewest seeds (at least 2) whose MDE is at most ``target`` (None: undefined, or more
    than :data:`MAX_SEEDS_PROPOSED`)."""
    if sd is None or math.isnan(sd) or math.isnan(target) or target <= 0:
        return None
    if sd == 0:
        return 2
    lo, hi = 2, MAX_SEEDS_PROPOSED
    if minimum_detectable_effect(sd, hi, alpha, power) > target:
        return None
    while lo < hi:  # the MDE falls with n
        mid = (lo + hi) // 2
        if minimum_detectable_effect(sd, mid, alpha, power) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class PowerTarget:
    """The MDE of every main effect on ``metrics`` at most ``share`` of the baseline mean."""

    metrics: tuple[str, ...]
    share: float
    alpha: float = ALPHA
    power: float = POWER

    def text(self) -> str:
        return (
            f"MDE of every main effect (short design: cell − baseline) ≤ {self.share:.0%} of "
            "the baseline mean "
            f"({int(self.power * 100)}% power, two-sided {self.alpha:g}) on "
            + ", ".join(f"`{m}`" for m in self.metrics)
        )


TARGET = PowerTarget(metrics=("liquidations", "notional_usd", "shortfall_peak_usd"), share=0.20)


@dataclass(frozen=True)
class PowerGap:
    """A (mode, figure, effect) whose MDE misses the target."""

    mode: str
    figure: str
    effect: str
    mde: float
    reference: float
    needed: int | None  # seeds that would reach the target at this run's SD


def power_gaps(effects: pd.DataFrame, target: PowerTarget = TARGET) -> list[PowerGap]:
    """Main (or vs-baseline) effects on the target's figures whose MDE exceeds the target's
    share of the baseline mean (``effects``: :func:`sim.experiments.factorial.effects_table`)."""
    gaps = []
    rows = effects[
        effects["kind"].isin(("main", "vs baseline")) & effects["figure"].isin(target.metrics)
    ]
    for _, r in rows.iterrows():
        ref = abs(r["baseline_mean"])
        if math.isnan(ref) or ref == 0:
            continue  # no baseline level to take a share of
        goal = target.share * ref
        if math.isnan(r["mde"]) or r["mde"] > goal:
            needed = seeds_needed(r["sd"], goal, target.alpha, target.power)
            gaps.append(PowerGap(r["mode"], r["figure"], r["effect"], r["mde"], ref, needed))
    return gaps


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def power_note(gaps: list[PowerGap], n_seeds: int, target: PowerTarget = TARGET) -> str:
    """One paragraph: under-powered or not, the worst gaps, and how many seeds would do."""
    if not gaps:
        return f"Powered for the target ({target.text()}) with {n_seeds} seeds."
    if n_seeds < 2:
        return (
            f"**Under-powered:** {n_seeds} seed gives no interval and no minimum detectable "
            f"effect; the target ({target.text()}) needs at least 2 seeds, and more to reach it "
            "(rerun with more --seeds: finished runs are reused)."
        )
    worst: dict[tuple[str, str], PowerGap] = {}
    for g in gaps:
        key = (g.mode, g.figure)
        if key not in worst or g.mde > worst[key].mde:
            worst[key] = g
    parts = [
        f"{g.mode.upper()} `{g.figure}` (`{g.effect}`: MDE {_num(g.mde)} = "
        f"{g.mde / g.reference:.0%} of the baseline mean {_num(g.reference)})"
        for g in worst.values()
    ]
    needed = [g.needed for g in gaps]
    more = (
        f"About {max(needed)} seeds would reach it at this run's variance"
        if all(n is not None for n in needed)
        else "No feasible number of seeds reaches it for every figure at this run's variance"
    )
    return (
        f"**Under-powered** for the target ({target.text()}): with {n_seeds} seeds, "
        + "; ".join(parts)
        + f". {more} (rerun with more --seeds: finished runs are reused)."
    )
