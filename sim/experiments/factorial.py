"""Effects of a two-level factorial design, paired over seeds (common random numbers).

Every seed runs every cell of the design, so each effect is first computed *within* a seed (a
contrast of that seed's cells) and then averaged over seeds, with a Student t interval on the
per-seed contrasts (:func:`sim.experiments.stats.mean_ci`): the seed-to-seed variation of the
price path and the traders cancels out of every contrast.

Full factorial (2^k cells), with ``x_f = +1`` when factor ``f`` is on and ``-1`` when off, and
``N = 2^k``::

    main effect of A        = mean(y | A on) - mean(y | A off)          = (2/N) sum_c x_A(c) y_c
    interaction of A and B  = ((effect of A with B on) - (effect of A with B off)) / 2
                            = (2/N) sum_c x_A(c) x_B(c) y_c

(Box, Hunter & Hunter, *Statistics for Experimenters*, ch. 5; Montgomery, *Design and Analysis
of Experiments*, ch. 6.) With 0/1 coding ``y = a + b A + c B + d A B``, the main effect of A is
``b + d/2`` and the interaction is ``d/2``.

Short design (baseline, each factor alone, all together): only the simple effect of each cell
against the baseline (``y_cell - y_baseline`` paired by seed) is estimable; interactions are not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.experiments.power import minimum_detectable_effect
from sim.experiments.stats import mean_ci

INTERACTION_SIGN = "×"


@dataclass(frozen=True)
class Effect:
    """One estimable effect: a main effect, a two-way interaction, or a cell against the
    baseline (short design)."""

    name: str
    factors: tuple[str, ...]
    kind: str  # "main", "interaction", "vs baseline"


def factorial_effects(factors: Sequence[str]) -> list[Effect]:
    """The main effects and the two-way interactions of a full factorial in ``factors``."""
    mains = [Effect(f, (f,), "main") for f in factors]
    pairs = [
        Effect(f"{a}{INTERACTION_SIGN}{b}", (a, b), "interaction")
        for a, b in itertools.combinations(factors, 2)
    ]
    return mains + pairs


def full_design(factors: Sequence[str]) -> list[tuple[str, ...]]:
    """Every combination of ``factors`` (2^k cells), by number of factors on."""
    return [c for k in range(len(factors) + 1) for c in itertools.combinations(factors, k)]


def contrast_weights(flags: pd.DataFrame, effect: Effect) -> np.ndarray:
    """Weights of a factorial contrast over the cells in ``flags`` (one row per cell, one
    boolean column per factor): (2/N) times the product of the factors' +-1 codes."""
    n = len(flags)
    if n != 2 ** flags.shape[1]:
        raise ValueError(
            f"a full factorial in {flags.shape[1]} factors has {2 ** flags.shape[1]} cells, got {n}"
        )
    if flags.drop_duplicates().shape[0] != n:
        raise ValueError("the cells of a full factorial must all differ")
    sign = np.ones(n)
    for f in effect.factors:
        sign *= np.where(flags[f].to_numpy(dtype=bool), 1.0, -1.0)
    return 2.0 * sign / n


def _wide(rows: pd.DataFrame, metric: str, factors: Sequence[str]) -> pd.DataFrame:
    """seed x cell table of ``metric``; the columns are the cells' factor flags."""
    keyed = rows.assign(_cell=list(zip(*(rows[f].astype(bool) for f in factors), strict=True)))
    wide = keyed.pivot_table(
        index="seed", columns="_cell", values=metric, aggfunc="first", dropna=False
    )
    return wide.astype(float)


def per_seed_contrasts(
    rows: pd.DataFrame, metric: str, factors: Sequence[str], effect: Effect
) -> pd.Series:
    """The contrast of ``effect`` within each seed (index: seed). A seed missing a cell, or
    whose ``metric`` is NaN in a cell, has no contrast (it is left out, not imputed)."""
    wide = _wide(rows, metric, factors)
    cells = list(itertools.product((False, True), repeat=len(factors)))
    wide = wide.reindex(columns=cells)
    flags = pd.DataFrame(cells, columns=list(factors))
    w = contrast_weights(flags, effect)
    complete = wide.notna().all(axis=1)
    out = pd.Series(np.nan, index=wide.index, dtype=float)
    out[complete] = wide[complete].to_numpy() @ w
    return out


def simple_contrasts(
    rows: pd.DataFrame, metric: str, cell: str, baseline: str = "baseline"
) -> pd.Series:
    """``metric`` in ``cell`` minus the baseline, within each seed (short design)."""
    wide = rows.pivot_table(
        index="seed", columns="cell", values=metric, aggfunc="first", dropna=False
    )
    if cell not in wide or baseline not in wide:
        return pd.Series(np.nan, index=wide.index, dtype=float)
    return (wide[cell] - wide[baseline]).astype(float)


@dataclass(frozen=True)
class EffectEstimate:
    """An effect averaged over seeds: t interval, the SD of the per-seed contrasts, and the
    minimum detectable effect of the design (80% power, two-sided 5%)."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    mde: float


def estimate(contrasts: Sequence[float]) -> EffectEstimate:
    """Mean of the per-seed contrasts with a paired t interval, their SD and the MDE."""
    x = np.asarray(contrasts, dtype=float)
    x = x[~np.isnan(x)]
    iv = mean_ci(x)
    sd = float(x.std(ddof=1)) if len(x) >= 2 else math.nan
    return EffectEstimate(
        iv.estimate, iv.low, iv.high, iv.n, sd, minimum_detectable_effect(sd, len(x))
    )


def effects_table(
    results: pd.DataFrame,
    factors: Sequence[str],
    metrics: Sequence[str],
    *,
    group: str = "mode",
    short_cells: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Long table of effects: one row per ``group`` value (margin mode), metric and effect.

    ``results``: one row per run with a ``seed``, a ``cell`` name, the boolean factor columns,
    ``group`` and the metrics (failed runs: NaN). Full factorial unless ``short_cells`` names
    the non-baseline cells of a short design (then each is contrasted with ``baseline``)."""
    rows = []
    for g, sub in results.groupby(group, sort=False):
        base = sub[sub["cell"] == "baseline"]
        for metric in metrics:
            base_mean = float(base[metric].mean()) if len(base) else math.nan
            if short_cells is None:
                plan = [
                    (e, per_seed_contrasts(sub, metric, factors, e))
                    for e in factorial_effects(factors)
                ]
            else:
                plan = [
                    (
                        Effect(c, tuple(c.split("+")), "vs baseline"),
                        simple_contrasts(sub, metric, c),
                    )
                    for c in short_cells
                ]
            for effect, contrasts in plan:
                est = estimate(contrasts.to_numpy())
                rows.append(
                    {
                        group: g,
                        "figure": metric,
                        "effect": effect.name,
                        "kind": effect.kind,
                        "estimate": est.estimate,
                        "ci_low": est.low,
                        "ci_high": est.high,
                        "seeds": est.n,
                        "sd": est.sd,
                        "mde": est.mde,
                        "baseline_mean": base_mean,
                        "mde_share_of_baseline": est.mde / abs(base_mean)
                        if base_mean and not math.isnan(base_mean)
                        else math.nan,
                    }
                )
    return pd.DataFrame(rows)
