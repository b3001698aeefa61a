"""``liqsim sensitivity``: global sensitivity of the headline figures to uncalibrated parameters.

The parameters (``--params PATH=LOW:HIGH``; by default the stylized parameters that matter for
cascades, :data:`DEFAULT_RANGES`) are sampled with SALib over their ranges, every sample point
runs every seed (common random numbers: the same seeds at every point), and each point's figure
is the mean over those seeds. Two methods:

* **Morris** (elementary effects; ``--trajectories R``, ``--levels L``): R random one-at-a-time
  trajectories on an L-level grid, ``R × (D + 1)`` points for D parameters. ``mu*`` (mean
  absolute elementary effect) ranks the parameters by overall influence, ``sigma`` (standard
  deviation of the effects) says how much that influence depends on the other parameters
  (interactions, non-linearity). SALib scales an effect by the step in the unit range (2/3 with 4
  levels), so ``mu*`` is in the figure's units per whole range of the parameter.
* **Sobol** (variance decomposition, Saltelli sampling; ``--samples N``, a power of 2):
  ``N × (D + 2)`` points. ``S1``: the share of the figure's variance explained by the parameter
  alone; ``ST``: its share including all interactions; 95% bootstrap intervals.

An integer parameter is rounded to the nearest integer in its run; the analysis uses the
unrounded sample (the model is then a step function of it). Runs are keyed, executed and resumed
exactly as ``liqsim sweep``'s (:meth:`~sim.experiments.common.ExperimentFolder.execute`); the sample
is drawn with a fixed seed (``--sample-seed``) so a rerun plans the same runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sim.experiments.common import (
    DEFAULT_RUN_OPTIONS,
    ExperimentFolder,
    RunOptions,
    reproduce_block,
)
from sim.experiments.design import (
    check_override,
    overrides,
    parse_number,
    resolved_value,
)
from sim.experiments.metrics import METRICS
from sim.experiments.runs import Batch, RunSpec
from sim.output.markdown import markdown_table
from sim.output.plots import save_figure
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario

METHODS = ("morris", "sobol")
DEFAULT_METRICS = ("liquidations", "notional_usd", "shortfall_peak_usd", "delay_mean_blocks")
DEFAULT_TRAJECTORIES = 10
DEFAULT_LEVELS = 4
DEFAULT_SAMPLES = 32
SAMPLE_SEED = 20_250_101  # fixed: a rerun plans exactly the same runs
CONFIDENCE = 0.95
RESAMPLES = 1000

#: The stylized (uncalibrated) parameters that matter for cascades, with ranges around their
#: defaults (docs/parameters.md) and why. ``liquidators.capital_usd`` acts only with
#: ``liquidators.mode = "takeover"`` and is left out otherwise.
DEFAULT_RANGES: tuple[tuple[str, float, float, str], ...] = (
    ("background.urgent_utilization", 0.2, 1.2, "default 0.6; below and well above the 0.5 target"),
    ("background.full_stress_volatility_ratio", 2.0, 8.0, "default 4x calm volatility"),
    ("background.activity_multiple", 0.0, 20.0, "default 10; 0 = no echo of our bots"),
    ("background.tip_dispersion", 0.1, 1.0, "default 0.5 (levels 0.55x-1.8x of the median)"),
    ("traders.rescue_tip_percentile", 60.0, 99.0, "default 90; 60 = ordinary, 99 = top"),
    ("traders.speed_up_after_blocks", 1.0, 15.0, "default 5 blocks (1 minute)"),
    ("traders.top_up_delay_blocks", 0.0, 15.0, "default 5 blocks"),
    ("markets.*.depth_volatility_exponent", 0.0, 3.0, "default 2 (square-root law); 0 = fixed"),
    ("markets.*.impact_half_life_blocks", 10.0, 90.0, "default 30 blocks (6 minutes)"),
    ("liquidators.bid_cap_gwei", 50.0, 1000.0, "default 500 gwei"),
    ("liquidators.capital_usd", 20_000.0, 500_000.0, "default 100,000 USD; takeover mode only"),
)
TAKEOVER_ONLY = ("liquidators.capital_usd",)


@dataclass(frozen=True)
class ParamRange:
    """One factor: a parameter path (``markets.*.NAME``: every market), its range, whether its
    runs take integers, and why the range."""

    path: str
    low: float
    high: float
    integer: bool = False
    why: str = ""

    def value_text(self, v: float) -> str:
        return str(round(v)) if self.integer else repr(float(v))


@dataclass(frozen=True)
class Design:
    """The method and its size."""

    method: str = "morris"
    trajectories: int = DEFAULT_TRAJECTORIES
    levels: int = DEFAULT_LEVELS
    samples: int = DEFAULT_SAMPLES
    seed: int = SAMPLE_SEED

    def points(self, d: int) -> int:
        """Sample points for ``d`` parameters."""
        if self.method == "morris":
            return self.trajectories * (d + 1)
        return self.samples * (d + 2)


@dataclass
class SensitivityResult:
    folder: Path
    results: pd.DataFrame
    sample: pd.DataFrame
    indices: pd.DataFrame
    batch: Batch


# ------------------------------------------------------------------ parameters


def parse_range(text: str) -> tuple[str, float, float]:
    """``"path=low:high"`` -> ``(path, low, high)``; errors name ``--params``."""
    path, sep, rng = text.partition("=")
    path = path.strip()
    low_text, colon, high_text = rng.partition(":")
    if not sep or not path or not colon:
        raise ConfigError("--params", f"expected PATH=LOW:HIGH, got {text!r}")
    low = parse_number(low_text, "--params", path)
    high = parse_number(high_text, "--params", path)
    if not low < high:
        raise ConfigError("--params", f"{path}: LOW must be below HIGH, got {text!r}")
    return path, low, high


def check_range(scenario: Scenario, path: str, low: float, high: float, why: str = ""):
    """A :class:`ParamRange` whose path is a numeric parameter of ``scenario`` and whose ends are
    valid values of it (errors name ``--params``)."""
    current = check_value(scenario, path)
    integer = isinstance(current, int)
    rng = ParamRange(path, low, high, integer, why)
    if integer and round(low) == round(high):
        raise ConfigError("--params", f"{path} is an integer: {low:g}:{high:g} holds one value")
    for v in (low, high):
        check_override(scenario, overrides(scenario, path, rng.value_text(v)), "--params")
    return rng


def check_value(scenario: Scenario, path: str) -> Any:
    """The current value of a numeric parameter (errors name ``--params``)."""
    try:
        current = resolved_value(scenario, path)
    except (KeyError, IndexError, ValueError, TypeError):
        raise ConfigError("--params", f"{path!r} is not a scenario parameter") from None
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise ConfigError("--params", f"{path} is not numeric (it is {current!r})")
    return current


def parse_ranges(scenario: Scenario, texts: list[str]) -> list[ParamRange]:
    out = [check_range(scenario, *parse_range(t)) for t in texts]
    paths = [p.path for p in out]
    for p in paths:
        if paths.count(p) > 1:
            raise ConfigError("--params", f"{p!r} is given twice")
    if not out:
        raise ConfigError("--params", "no parameters")
    return out


def default_ranges(scenario: Scenario) -> list[ParamRange]:
    """:data:`DEFAULT_RANGES` for ``scenario`` (takeover-only ones only in takeover mode)."""
    takeover = scenario.liquidators.mode == "takeover"
    return [
        check_range(scenario, path, low, high, why)
        for path, low, high, why in DEFAULT_RANGES
        if takeover or path not in TAKEOVER_ONLY
    ]


def problem(params: list[ParamRange]) -> dict[str, Any]:
    """The SALib problem."""
    return {
        "num_vars": len(params),
        "names": [p.path for p in params],
        "bounds": [[p.low, p.high] for p in params],
    }


# ------------------------------------------------------------------ sampling and planning


def check_design(design: Design, d: int) -> None:
    if design.method not in METHODS:
        raise ConfigError("--method", f"must be one of {', '.join(METHODS)}, got {design.method!r}")
    if design.method == "morris":
        if design.trajectories < 2:
            raise ConfigError("--trajectories", f"must be >= 2, got {design.trajectories}")
        if not 2 <= design.levels <= 20 or design.levels % 2:
            raise ConfigError("--levels", f"must be even, 2..20, got {design.levels}")
    elif design.samples < 2 or design.samples & (design.samples - 1):
        raise ConfigError("--samples", f"must be a power of 2, >= 2, got {design.samples}")
    if d < 2:
        raise ConfigError("--params", f"need at least 2 parameters, got {d}")


def sample(params: list[ParamRange], design: Design) -> np.ndarray:
    """The SALib sample (rows = points, columns = parameters), deterministic for a design."""
    check_design(design, len(params))
    prob = problem(params)
    if design.method == "morris":
        from SALib.sample import morris

        return morris.sample(prob, design.trajectories, num_levels=design.levels, seed=design.seed)
    from SALib.sample import sobol

    return sobol.sample(prob, design.samples, calc_second_order=False, seed=design.seed)


def point_overrides(scenario: Scenario, params: list[ParamRange], row: np.ndarray) -> list[str]:
    out = []
    for p, v in zip(params, row, strict=True):
        out += overrides(scenario, p.path, p.value_text(float(v)))
    return out


def plan(
    scenario: Scenario, params: list[ParamRange], design: Design, seeds: list[int]
) -> tuple[np.ndarray, list[RunSpec]]:
    """The sample and one run per point and seed (every point validated before anything runs)."""
    x = sample(params, design)
    specs = []
    for i, row in enumerate(x):
        sc = check_override(scenario, point_overrides(scenario, params, row), "--params")
        labels = {p.path: p.value_text(float(v)) for p, v in zip(params, row, strict=True)}
        specs += [RunSpec.of(sc, s, point=i, **labels) for s in seeds]
    return x, specs


def point_means(results: pd.DataFrame, n_points: int, metric: str) -> np.ndarray:
    """The metric per sample point: mean over its finished seeds (NaN if none)."""
    ok = results[results["state"] == "complete"]
    means = ok.groupby("point")[metric].mean()
    return means.reindex(range(n_points)).to_numpy(dtype=float)


def seed_noise_share(results: pd.DataFrame, metric: str, y: np.ndarray) -> float:
    """Share of the variance of the point means that is seed noise: pooled within-point variance
    across seeds / seeds per point / variance of the point means (NaN below 2 seeds)."""
    ok = results[results["state"] == "complete"]
    g = ok.groupby("point")[metric]
    n = g.count()
    if n.empty or n.max() < 2:
        return math.nan
    within = float(g.var(ddof=1).mean())
    total = float(np.nanvar(y, ddof=1))
    if total == 0 or math.isnan(total):
        return math.nan
    return within / float(n.mean()) / total


# ------------------------------------------------------------------ analysis


def analyze_morris(
    params: list[ParamRange], x: np.ndarray, y: np.ndarray, design: Design
) -> tuple[pd.DataFrame, str]:
    """Morris indices, trajectories with an undefined figure (a failed run, or a figure
    undefined in a run) left out; (table, note)."""
    from SALib.analyze import morris

    d = len(params)
    size = d + 1
    keep = [t for t in range(len(y) // size) if np.isfinite(y[t * size : (t + 1) * size]).all()]
    note = f"{len(keep)} of {len(y) // size} trajectories"
    empty = pd.DataFrame({"parameter": [p.path for p in params]})
    if len(keep) < 2:
        undefined = empty.assign(mu_star=math.nan, mu_star_conf=math.nan, mu=math.nan)
        return undefined.assign(sigma=math.nan), note + " (too few with a defined figure)"
    rows = np.concatenate([np.arange(t * size, (t + 1) * size) for t in keep])
    res = morris.analyze(
        problem(params),
        x[rows],
        y[rows],
        num_resamples=RESAMPLES,
        conf_level=CONFIDENCE,
        num_levels=design.levels,
        seed=design.seed,
    )
    if float(np.ptp(y[rows])) == 0:
        note += " (the figure is the same at every point: no ranking)"
    table = pd.DataFrame(
        {
            "parameter": [p.path for p in params],
            "mu_star": np.asarray(res["mu_star"], dtype=float),
            "mu_star_conf": np.asarray(res["mu_star_conf"], dtype=float),
            "mu": np.asarray(res["mu"], dtype=float),
            "sigma": np.asarray(res["sigma"], dtype=float),
        }
    )
    return table, note


def analyze_sobol(
    params: list[ParamRange], y: np.ndarray, design: Design
) -> tuple[pd.DataFrame, str]:
    """First-order and total Sobol indices with bootstrap intervals; (table, note)."""
    from SALib.analyze import sobol

    names = [p.path for p in params]
    nan = pd.DataFrame({"parameter": names}).assign(
        S1=math.nan, S1_conf=math.nan, ST=math.nan, ST_conf=math.nan
    )
    if not np.isfinite(y).all():
        return nan, f"n/a: {int((~np.isfinite(y)).sum())} points without a defined figure"
    if float(np.var(y)) == 0:
        return nan, "n/a: the figure is the same at every point"
    res = sobol.analyze(
        problem(params),
        y,
        calc_second_order=False,
        num_resamples=RESAMPLES,
        conf_level=CONFIDENCE,
        seed=design.seed,
    )
    table = pd.DataFrame(
        {
            "parameter": names,
            "S1": np.asarray(res["S1"], dtype=float),
            "S1_conf": np.asarray(res["S1_conf"], dtype=float),
            "ST": np.asarray(res["ST"], dtype=float),
            "ST_conf": np.asarray(res["ST_conf"], dtype=float),
        }
    )
    return table, f"{len(y)} points"


def rank(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Rank 1 = most influential (Morris: mu*; Sobol: ST); ties share the best rank, undefined
    indices come last."""
    key = "mu_star" if method == "morris" else "ST"
    ranks = table[key].rank(ascending=False, method="min", na_option="bottom").astype(int)
    table = table.assign(rank=ranks)
    return table.sort_values(["rank"], kind="stable").reset_index(drop=True)


def indices(
    results: pd.DataFrame,
    x: np.ndarray,
    params: list[ParamRange],
    design: Design,
    metrics: tuple[str, ...],
) -> pd.DataFrame:
    """The long ranked table: one row per metric and parameter."""
    bounds = {p.path: (p.low, p.high) for p in params}
    frames = []
    for metric in metrics:
        y = point_means(results, len(x), metric)
        if design.method == "morris":
            table, note = analyze_morris(params, x, y, design)
        else:
            table, note = analyze_sobol(params, y, design)
        table = rank(table, design.method)
        table.insert(0, "metric", metric)
        table["low"] = [bounds[p][0] for p in table["parameter"]]
        table["high"] = [bounds[p][1] for p in table["parameter"]]
        table["used"] = note
        table["seed_noise_share"] = seed_noise_share(results, metric, y)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ plot and report


def sensitivity_plot(
    table: pd.DataFrame, method: str, metrics: tuple[str, ...], path: Path, name: str
) -> Path:
    """Ranked horizontal bars per metric: Morris mu* (with its interval) and sigma; Sobol S1
    and ST (with their intervals)."""
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    d = table["parameter"].nunique()
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.4 * cols, 0.9 + 0.38 * d * rows + 0.6 * rows), squeeze=False
    )
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    morris = (("mu_star", "mu*"), ("sigma", "sigma"))
    bars = morris if method == "morris" else (("S1", "S1"), ("ST", "ST"))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        t = table[table["metric"] == metric].sort_values("rank", ascending=False)
        pos = np.arange(len(t))
        for k, (col, text) in enumerate(bars):
            err = t.get(f"{col}_conf")
            ax.barh(
                pos + (k - 0.5) * 0.4,
                np.nan_to_num(t[col].to_numpy(dtype=float)),
                height=0.4,
                xerr=None if err is None else np.nan_to_num(err.to_numpy(dtype=float)),
                capsize=2,
                label=text,
                color=("tab:red", "tab:gray")[k],
            )
        ax.set_yticks(pos, t["parameter"], fontsize=7)
        if not np.nan_to_num(t[bars[0][0]].to_numpy(dtype=float)).any():
            ax.text(
                0.5,
                0.5,
                "no effect: the figure is the same at every point\n(or undefined)",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=8,
                color="0.3",
            )
        m = METRICS[metric]
        unit = f" ({m.unit} per range)" if method == "morris" else " (share of variance)"
        ax.set_title(f"{m.label}{unit}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Global sensitivity ({method.capitalize()}, {name}; rank 1 at the top, 95% intervals)",
        fontsize=11,
    )
    return save_figure(fig, path)


def _metric_table(t: pd.DataFrame, method: str) -> pd.DataFrame:
    shown = pd.DataFrame(
        {
            "rank": t["rank"],
            "parameter": "`" + t["parameter"] + "`",
            "range": [f"{lo:g} .. {hi:g}" for lo, hi in zip(t["low"], t["high"], strict=True)],
        }
    )
    if method == "morris":
        shown["mu*"] = t["mu_star"]
        shown["mu* 95% ±"] = t["mu_star_conf"]
        shown["mu"] = t["mu"]
        shown["sigma"] = t["sigma"]
        shown["sigma / mu*"] = t["sigma"] / t["mu_star"].where(t["mu_star"] != 0)
    else:
        shown["S1"] = t["S1"]
        shown["S1 95% ±"] = t["S1_conf"]
        shown["ST"] = t["ST"]
        shown["ST 95% ±"] = t["ST_conf"]
    return shown


def _formats(fmt: str) -> dict[str, str]:
    """Number formats of the report's columns (Morris indices in the figure's own format)."""
    return {
        **dict.fromkeys(("mu*", "mu* 95% ±", "mu", "sigma"), fmt),
        "sigma / mu*": "{:.2f}",
        **dict.fromkeys(("S1", "S1 95% ±", "ST", "ST 95% ±"), "{:.3f}"),
    }


def report_text(
    scenario: Scenario,
    params: list[ParamRange],
    design: Design,
    seeds: list[int],
    metrics: tuple[str, ...],
    table: pd.DataFrame,
    batch: Batch,
    backend: str,
    argv: str,
) -> str:
    d = len(params)
    points = design.points(d)
    size = (
        f"{design.trajectories} trajectories × {d + 1} points on a {design.levels}-level grid"
        if design.method == "morris"
        else f"{design.samples} base samples × {d + 2} (Saltelli, no second order)"
    )
    lines = [
        f"# Global sensitivity ({design.method.capitalize()}): scenario `{scenario.name}`",
        "",
        f"{d} parameters; {size} = {points} points × {len(seeds)} seed"
        f"{'s' if len(seeds) != 1 else ''} ({seeds[0]}..{seeds[-1]}, the same at every point) = "
        f"{points * len(seeds)} runs, backend `{backend}`. {batch.executed} runs executed now, "
        f"{batch.skipped} reused"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + f"; sample seed {design.seed}. A point's figure is its mean over the seeds.",
        "",
        "| parameter | range | why |",
        "|---|---|---|",
        *(
            f"| `{p.path}` | {p.low:g} .. {p.high:g}{' (integer)' if p.integer else ''} | "
            f"{p.why or 'given'} |"
            for p in params
        ),
        "",
    ]
    if design.method == "morris":
        lines += [
            "**mu\\*** (mean absolute elementary effect, in the figure's unit per whole range of "
            "the parameter) ranks overall influence; **sigma** (spread of the effects) large "
            "against mu\\* means the effect depends on the other parameters (interactions, "
            "non-linearity); **mu** far below mu\\* means effects of both signs. The ± column is "
            "a bootstrap 95% half-width of mu\\*.",
        ]
    else:
        lines += [
            "**S1**: share of the figure's variance due to the parameter alone; **ST**: including "
            "its interactions (ST - S1 large: the parameter acts through others). ± = bootstrap "
            "95% half-width; small samples give wide intervals and can give slightly negative "
            "indices (read them as 0).",
        ]
    lines += [
        "",
        "*Seed noise*: share of the variance of the point figures that is seed-to-seed noise "
        "(within-point variance / seeds / variance across points; n/a with one seed). Near 1, "
        "the ranking is noise: add seeds.",
        "",
    ]
    for metric in metrics:
        t = table[table["metric"] == metric]
        m = METRICS[metric]
        noise = float(t["seed_noise_share"].iloc[0])
        lines += [
            f"## {m.label} (`{metric}`, {m.unit})",
            "",
            f"Points used: {t['used'].iloc[0]}. Seed noise: "
            + ("n/a" if math.isnan(noise) else f"{noise:.2f}")
            + ".",
            "",
            markdown_table(_metric_table(t, design.method), _formats(m.fmt)),
            "",
        ]
    lines += [
        "![sensitivity](plots/sensitivity.png)",
        "",
        "summary.csv: the ranked indices (one row per figure and parameter); sample.csv: the "
        "SALib sample (one row per point, unrounded); results.csv: one row per run.",
        "",
        reproduce_block(argv),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the experiment


def run_sensitivity(
    scenario: Scenario,
    params: list[ParamRange],
    design: Design,
    seeds: list[int],
    out: str | Path,
    options: RunOptions = DEFAULT_RUN_OPTIONS,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    argv: str = "",
) -> SensitivityResult:
    for f in metrics:
        if f not in METRICS:
            raise ConfigError("--metrics", f"unknown figure {f!r} (known: {', '.join(METRICS)})")
    x, specs = plan(scenario, params, design, seeds)
    folder = ExperimentFolder(out)
    record = {
        "method": design.method,
        "parameters": [
            {"path": p.path, "low": p.low, "high": p.high, "integer": p.integer} for p in params
        ],
        "trajectories": design.trajectories if design.method == "morris" else None,
        "levels": design.levels if design.method == "morris" else None,
        "samples": design.samples if design.method == "sobol" else None,
        "sample_seed": design.seed,
        "metrics": list(metrics),
        "seeds": seeds,
    }
    batch, results = folder.execute("sensitivity", scenario, specs, record, options)
    table = indices(results, x, params, design, metrics)
    sample_table = pd.DataFrame(x, columns=[p.path for p in params])
    sample_table.insert(0, "point", range(len(x)))
    folder.table("results", results)
    folder.table("summary", table)
    folder.table("sample", sample_table)
    sensitivity_plot(table, design.method, metrics, folder.plots / "sensitivity.png", scenario.name)
    folder.report(
        report_text(scenario, params, design, seeds, metrics, table, batch, options.backend, argv)
    )
    folder.finish(batch)
    return SensitivityResult(folder.path, results, sample_table, table, batch)
