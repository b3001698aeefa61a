"""``liqsim phase``: a phase diagram of cascade amplification over two scenario parameters.

Every cell of the grid ``--x PATH=V1,V2,... × --y PATH=W1,W2,...`` runs every seed twice: the
**scenario** arm (the scenario as given, with the cell's two values) and the **comparison** arm
(the same cell with the comparison overrides; by default the frictionless twin: no gas, no
oracle lag, no endogenous price impact). The cell's value is the **amplification**

    mean over seeds of METRIC in the scenario arm / mean over the same seeds in the comparison

with a paired percentile bootstrap interval (:func:`sim.experiments.stats.ratio_of_means`);
with ``--counterfactual none`` there is no comparison arm and the value is the mean of the metric
(a level, with a t interval). The **tipping point** of a row is the first value of the x axis (in
the order given) at which the value exceeds ``--threshold``; the same along each column.

Runs are :class:`~sim.experiments.runs.RunSpec` keyed by scenario fingerprint and seed and executed
by :meth:`~sim.experiments.common.ExperimentFolder.execute`, as ``liqsim sweep``'s: parallel
(local processes or Ray) and resumable (a rerun, or a wider grid, runs only what is missing).
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
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Rectangle

from sim.experiments.common import (
    DEFAULT_RUN_OPTIONS,
    ExperimentFolder,
    RunOptions,
    reproduce_block,
)
from sim.experiments.design import check_override, overrides, parse_values, resolved_value
from sim.experiments.metrics import METRICS
from sim.experiments.runs import Batch, RunSpec
from sim.experiments.stats import Interval, mean_ci, paired_difference, ratio_of_means
from sim.output.markdown import markdown_table
from sim.output.plots import save_figure
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario

#: Liquidations: the frictionless twin of any crash has some, so the ratio is defined in every
#: cell; loss figures (shortfall_peak_usd, bad_debt_usd) are usually 0 without frictions, which
#: leaves their ratio undefined (map them as levels with ``--counterfactual none``).
DEFAULT_METRIC = "liquidations"
FRICTIONLESS = (
    "run.gas_enabled=false",
    "run.oracle_lag_enabled=false",
    "run.endogenous_impact=false",
)
#: Amplification above which a cell counts as tipped (10% more than the comparison).
DEFAULT_THRESHOLD = 1.1
ARMS = ("scenario", "comparison")


@dataclass(frozen=True)
class Axis:
    """One axis of the diagram: a parameter path and its values (text, in the order given)."""

    path: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    """What a cell is compared with: overrides of the comparison arm, or none (levels)."""

    overrides: tuple[str, ...] = FRICTIONLESS

    @property
    def ratio(self) -> bool:
        return bool(self.overrides)

    def text(self) -> str:
        if not self.ratio:
            return "none (the value is the metric's mean)"
        if self.overrides == FRICTIONLESS:
            return "the frictionless twin (" + ", ".join(f"`{o}`" for o in self.overrides) + ")"
        return ", ".join(f"`{o}`" for o in self.overrides)


@dataclass(frozen=True)
class Cell:
    """One grid cell: its typed axis labels and its two arms' scenarios."""

    x: Any
    y: Any
    scenario: Scenario
    comparison: Scenario | None


@dataclass(frozen=True)
class Crossing:
    """Where the value first exceeds the threshold along one row (or column) of the grid."""

    along: str  # "row" (x varies) or "column" (y varies)
    at: Any  # the fixed value of the other axis
    first: Any  # first value above the threshold (None: never)
    first_ci: Any  # first value whose interval's lower bound is above it (None: never / n/a)
    stays_above: bool | None  # from the first crossing on, every defined value stays above


@dataclass
class PhaseResult:
    folder: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    crossings: list[Crossing]
    batch: Batch


# ------------------------------------------------------------------ parsing and planning


def parse_axis(text: str, flag: str) -> Axis:
    path, values = parse_values(text, flag)
    return Axis(path, tuple(values))


def parse_comparison(texts: list[str] | None) -> Comparison:
    """``--counterfactual`` values: none given -> the frictionless twin; ``none`` -> levels;
    else ``PATH=VALUE`` overrides of the comparison arm."""
    if not texts:
        return Comparison()
    if [t.strip().lower() for t in texts] == ["none"]:
        return Comparison(())
    out = []
    for t in texts:
        path, sep, value = t.partition("=")
        if t.strip().lower() == "none":
            raise ConfigError("--counterfactual", "'none' cannot be combined with overrides")
        if not sep or not path.strip() or not value.strip():
            raise ConfigError("--counterfactual", f"expected PATH=VALUE or none, got {t!r}")
        out.append(f"{path.strip()}={value.strip()}")
    return Comparison(tuple(out))


def cells(scenario: Scenario, x: Axis, y: Axis, comparison: Comparison) -> list[Cell]:
    """Every (x, y) cell with its validated scenarios (rows: y, in order; then x)."""
    if x.path == y.path:
        raise ConfigError("--y", f"{y.path!r} is already the x axis")
    out = []
    for yv in y.values:
        for xv in x.values:
            sc = check_override(scenario, overrides(scenario, x.path, xv), "--x")
            sc = check_override(sc, overrides(scenario, y.path, yv), "--y")
            twin = (
                check_override(sc, list(comparison.overrides), "--counterfactual")
                if comparison.ratio
                else None
            )
            out.append(Cell(resolved_value(sc, x.path), resolved_value(sc, y.path), sc, twin))
    for flag, axis, labels in (("--x", x, {c.x for c in out}), ("--y", y, {c.y for c in out})):
        if len(labels) != len(axis.values):
            raise ConfigError(flag, f"two values of {axis.path!r} are the same number")
    return out


def plan(
    scenario: Scenario, x: Axis, y: Axis, seeds: list[int], comparison: Comparison
) -> list[RunSpec]:
    """Every cell × arm × seed (validates every cell before anything runs)."""
    specs = []
    for c in cells(scenario, x, y, comparison):
        arms = [("scenario", c.scenario)]
        if c.comparison is not None:
            arms.append(("comparison", c.comparison))
        for arm, sc in arms:
            specs += [RunSpec.of(sc, s, **{x.path: c.x, y.path: c.y, "arm": arm}) for s in seeds]
    return specs


# ------------------------------------------------------------------ analysis


def cell_value(scen: np.ndarray, comp: np.ndarray | None) -> tuple[Interval, Interval | None]:
    """(value, difference): the amplification with its bootstrap interval and the paired
    difference scenario - comparison; without a comparison, the mean and no difference."""
    if comp is None:
        return mean_ci(scen), None
    return ratio_of_means(scen, comp), paired_difference(scen, comp)


def summarize(
    results: pd.DataFrame, x: Axis, y: Axis, metric: str, comparison: Comparison
) -> pd.DataFrame:
    """One row per cell (all cells of the grid, even those without a finished run): arm means,
    the cell's value with its interval, the paired difference, seeds used, runs failed."""
    x_labels = list(dict.fromkeys(results[x.path])) if len(results) else []
    y_labels = list(dict.fromkeys(results[y.path])) if len(results) else []
    rows = []
    for yl in y_labels:
        for xl in x_labels:
            g = results[(results[x.path] == xl) & (results[y.path] == yl)]
            rows.append(_cell_row(g, x, y, xl, yl, metric, comparison))
    return pd.DataFrame(rows)


def _arm(g: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    ok = g[(g["arm"] == arm) & (g["state"] == "complete")]
    return ok.set_index("seed")[metric].astype(float)


def _cell_row(
    g: pd.DataFrame, x: Axis, y: Axis, xl: Any, yl: Any, metric: str, comparison: Comparison
) -> dict[str, Any]:
    scen = _arm(g, "scenario", metric)
    row: dict[str, Any] = {x.path: xl, y.path: yl}
    if comparison.ratio:
        comp = _arm(g, "comparison", metric)
        seeds = sorted(set(scen.index) & set(comp.index))
        a, b = scen.reindex(seeds).to_numpy(), comp.reindex(seeds).to_numpy()
        value, diff = cell_value(a, b)
        sm, cm = mean_ci(a), mean_ci(b)
        row.update(
            scenario_mean=sm.estimate,
            scenario_ci_low=sm.low,
            scenario_ci_high=sm.high,
            comparison_mean=cm.estimate,
            comparison_ci_low=cm.low,
            comparison_ci_high=cm.high,
        )
    else:
        value, diff = cell_value(scen.to_numpy(), None)
        row.update(scenario_mean=value.estimate, scenario_ci_low=value.low)
        row.update(scenario_ci_high=value.high)
    row.update(value=value.estimate, value_ci_low=value.low, value_ci_high=value.high)
    row["seeds"] = value.n
    if diff is not None:
        row.update(difference=diff.estimate, difference_ci_low=diff.low)
        row["difference_ci_high"] = diff.high
    row["runs_failed"] = int((g["state"] != "complete").sum())
    return row


def grid(summary: pd.DataFrame, x: Axis, y: Axis, column: str) -> pd.DataFrame:
    """``column`` as a y × x table, axes in the order given (NaN: missing)."""
    if summary.empty:
        return pd.DataFrame()
    xs = list(dict.fromkeys(summary[x.path]))
    ys = list(dict.fromkeys(summary[y.path]))
    g = summary.pivot_table(index=y.path, columns=x.path, values=column, aggfunc="first")
    return g.reindex(index=ys, columns=xs)


def first_crossing(values: list[float], threshold: float) -> int | None:
    """Index of the first value strictly above ``threshold`` (NaN never is), or None."""
    for i, v in enumerate(values):
        if not math.isnan(v) and v > threshold:
            return i
    return None


def stays_above(values: list[float], start: int, threshold: float) -> bool:
    """From ``start`` on, every defined value is above ``threshold``."""
    return all(math.isnan(v) or v > threshold for v in values[start:])


def crossings(
    values: pd.DataFrame, lows: pd.DataFrame, threshold: float, along: str
) -> list[Crossing]:
    """The tipping point of every row (x varies; ``along="row"``) or column (y varies) of a
    y × x grid: the first value above ``threshold`` and the first whose interval's lower bound
    is above it."""
    if along == "column":
        values, lows = values.T, lows.T
    out = []
    for at, series in values.iterrows():
        v = [float(a) for a in series.to_numpy(dtype=float)]
        lo = [float(a) for a in lows.loc[at].to_numpy(dtype=float)]
        labels = list(series.index)
        i = first_crossing(v, threshold)
        j = first_crossing(lo, threshold)
        out.append(
            Crossing(
                along,
                at,
                labels[i] if i is not None else None,
                labels[j] if j is not None else None,
                stays_above(v, i, threshold) if i is not None else None,
            )
        )
    return out


# ------------------------------------------------------------------ plot


def _cell_text(value: float, n: int, fmt: str) -> str:
    return f"{fmt.format(value)}\nn={n}"


def label(v: Any) -> str:
    """An axis value as text: integral floats without ``.0``, with thousands separators."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _norm(finite: np.ndarray, ratio: bool):
    """Amplification: diverging around 1 (blue below, red above), symmetric in the ratio (x k
    and / k get the same depth of colour, and at least 1.1 and 1/1.1 span the scale, so a cell
    at 0.99 is not painted deep blue); levels: linear."""
    if not ratio or not len(finite):
        return None
    positive = finite[finite > 0]
    lo = float(positive.min()) if len(positive) else 1.0
    span = max(float(finite.max()), 1.0 / lo, 1.1)
    return TwoSlopeNorm(vcenter=1.0, vmin=1.0 / span, vmax=span)


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


def _panel(ax, values: pd.DataFrame, seeds: pd.DataFrame, fmt: str, ratio: bool, threshold):
    arr = values.to_numpy(dtype=float)
    finite = arr[np.isfinite(arr)]
    cmap = plt.get_cmap("RdBu_r" if ratio else "magma_r").with_extremes(bad="white")
    im = ax.imshow(
        np.ma.masked_invalid(arr),
        origin="lower",
        aspect="auto",
        cmap=cmap,
        norm=_norm(finite, ratio),
    )
    for (i, j), v in np.ndenumerate(arr):
        n = 0 if math.isnan(seeds.iloc[i, j]) else int(seeds.iloc[i, j])
        if math.isnan(v):
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, hatch="///", fill=False, ec="0.6", lw=0)
            )
            ax.text(
                j, i, f"{'n/a' if n else 'missing'}\nn={n}", ha="center", va="center", fontsize=7
            )
            continue
        color = _text_color(cmap(im.norm(v)))
        ax.text(j, i, _cell_text(v, n, fmt), ha="center", va="center", fontsize=7, color=color)
        if threshold is not None and v > threshold:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=1.6))
    ax.set_xticks(range(arr.shape[1]), [label(c) for c in values.columns], fontsize=8)
    ax.set_yticks(range(arr.shape[0]), [label(r) for r in values.index], fontsize=8)
    ax.set_xlabel(values.columns.name, fontsize=8)
    ax.set_ylabel(values.index.name, fontsize=8)
    plt.colorbar(im, ax=ax, shrink=0.85)


def phase_plot(
    summary: pd.DataFrame,
    x: Axis,
    y: Axis,
    metric: str,
    comparison: Comparison,
    threshold: float | None,
    path: Path,
    name: str,
) -> Path:
    """Heat map of the cell values (annotated with the value and the seeds it rests on; hatched:
    missing or undefined; outlined: above the threshold); with a comparison, a second panel
    with the scenario arm's levels."""
    panels = 2 if comparison.ratio else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.4), squeeze=False)
    seeds = grid(summary, x, y, "seeds")
    label = f"{METRICS[metric].label} ({METRICS[metric].unit})"
    value_fmt = "{:.2f}" if comparison.ratio else METRICS[metric].fmt
    _panel(axes[0][0], grid(summary, x, y, "value"), seeds, value_fmt, comparison.ratio, threshold)
    axes[0][0].set_title(
        f"amplification of {METRICS[metric].label}\n(scenario / comparison; outlined > "
        f"{threshold:g})"
        if comparison.ratio
        else f"{label}\n(mean over seeds"
        + (f"; outlined > {threshold:g})" if threshold is not None else ")"),
        fontsize=9,
    )
    if comparison.ratio:
        levels = grid(summary, x, y, "scenario_mean")
        _panel(axes[0][1], levels, seeds, METRICS[metric].fmt, False, None)
        axes[0][1].set_title(f"{label}, scenario arm\n(mean over seeds)", fontsize=9)
    fig.suptitle(f"Phase diagram: {x.path} × {y.path} ({name})", fontsize=11)
    return save_figure(fig, path)


# ------------------------------------------------------------------ report


def _interval(row: pd.Series, fmt: str) -> str:
    """'est [low, high] (n=k)', 'est (n=1)' or 'n/a (n=k)'."""
    est, low, high = row["value"], row["value_ci_low"], row["value_ci_high"]
    n = f"(n={int(row['seeds'])})"
    if math.isnan(est):
        return f"n/a {n}"
    if math.isnan(low) or math.isnan(high):
        return f"{fmt.format(est)} {n}"
    return f"{fmt.format(est)} [{fmt.format(low)}, {fmt.format(high)}] {n}"


def _grid_table(summary: pd.DataFrame, x: Axis, y: Axis, fmt: str) -> pd.DataFrame:
    text = summary.assign(cell=[_interval(r, fmt) for _, r in summary.iterrows()])
    g = grid(text, x, y, "cell")
    table = {f"{y.path} \\ x": [label(i) for i in g.index]}
    table.update({f"{x.path} = {label(c)}": list(g[c]) for c in g.columns})
    return pd.DataFrame(table)


def _crossing_table(items: list[Crossing], fixed: str, varying: str) -> pd.DataFrame:
    def show(v: Any, never: str) -> str:
        return never if v is None else label(v)

    return pd.DataFrame(
        {
            fixed: [label(c.at) for c in items],
            f"first {varying} above": [show(c.first, "never") for c in items],
            f"first {varying} whose 95% CI is above": [
                show(c.first_ci, "never / n/a") for c in items
            ],
            "stays above after it": [
                "n/a" if c.stays_above is None else ("yes" if c.stays_above else "no")
                for c in items
            ],
        }
    )


def report_text(
    scenario: Scenario,
    x: Axis,
    y: Axis,
    seeds: list[int],
    metric: str,
    comparison: Comparison,
    threshold: float | None,
    summary: pd.DataFrame,
    found: list[Crossing],
    batch: Batch,
    backend: str,
    argv: str,
) -> str:
    m = METRICS[metric]
    what = "amplification" if comparison.ratio else f"mean {m.label}"
    fmt = "{:.2f}" if comparison.ratio else m.fmt
    runs = len(x.values) * len(y.values) * len(seeds) * (2 if comparison.ratio else 1)
    lines = [
        f"# Phase diagram of `{metric}` over `{x.path}` × `{y.path}`: scenario `{scenario.name}`",
        "",
        f"Grid: `{x.path}` = {', '.join(x.values)} (x) × `{y.path}` = {', '.join(y.values)} (y); "
        f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); {runs} runs planned, backend "
        f"`{backend}`. {batch.executed} runs executed now, {batch.skipped} reused from earlier "
        "invocations"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + ".",
        "",
        f"Comparison arm: {comparison.text()}.",
        "",
    ]
    if comparison.ratio:
        lines += [
            f"Cell value = **amplification**: mean {m.label} over the seeds with the scenario as "
            "given (and the cell's two values) / mean over the same seeds in the comparison arm "
            "of the same cell; 95% paired percentile bootstrap interval (n/a with one seed; the "
            "value is n/a where the comparison's mean is 0).",
        ]
    else:
        lines += [f"Cell value = mean {m.label} ({m.unit}) over seeds, 95% t interval."]
    lines += [
        "",
        f"## {what[0].upper() + what[1:]} per cell (n = seeds with a finished pair of runs)",
        "",
        markdown_table(_grid_table(summary, x, y, fmt))
        if not summary.empty
        else "No run completed.",
        "",
        "![phase diagram](plots/phase.png)",
        "",
    ]
    if threshold is None:
        lines += ["No `--threshold` given: no tipping points.", ""]
    elif found:
        rows = [c for c in found if c.along == "row"]
        cols = [c for c in found if c.along == "column"]
        lines += [
            f"## Tipping points ({what} > {threshold:g})",
            "",
            f"Along each row (`{x.path}` in the order given):",
            "",
            markdown_table(_crossing_table(rows, y.path, x.path)),
            "",
            f"Along each column (`{y.path}` in the order given):",
            "",
            markdown_table(_crossing_table(cols, x.path, y.path)),
            "",
            '"stays above": no later value of the row or column falls back to the threshold '
            "or below (a tipping point, not a fluke of one cell). With few seeds, read the "
            "interval column.",
            "",
        ]
    lines += [
        "summary.csv has, per cell, both arms' means with t intervals, the value with its "
        "interval, the paired difference scenario - comparison and failed runs; results.csv "
        "has one row per run with every key figure.",
        "",
        reproduce_block(argv),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the experiment


def run_phase(
    scenario: Scenario,
    x: Axis,
    y: Axis,
    seeds: list[int],
    out: str | Path,
    options: RunOptions = DEFAULT_RUN_OPTIONS,
    *,
    metric: str = DEFAULT_METRIC,
    comparison: Comparison = Comparison(),
    threshold: float | None = DEFAULT_THRESHOLD,
    argv: str = "",
) -> PhaseResult:
    if metric not in METRICS:
        raise ConfigError("--metric", f"unknown figure {metric!r} (known: {', '.join(METRICS)})")
    specs = plan(scenario, x, y, seeds, comparison)
    folder = ExperimentFolder(out)
    design = {
        "x": {"path": x.path, "values": list(x.values)},
        "y": {"path": y.path, "values": list(y.values)},
        "metric": metric,
        "comparison": list(comparison.overrides) if comparison.ratio else "none",
        "threshold": threshold,
        "seeds": seeds,
    }
    batch, results = folder.execute("phase", scenario, specs, design, options)
    summary = summarize(results, x, y, metric, comparison)
    found: list[Crossing] = []
    if threshold is not None and not summary.empty:
        values, lows = grid(summary, x, y, "value"), grid(summary, x, y, "value_ci_low")
        found = crossings(values, lows, threshold, "row") + crossings(
            values, lows, threshold, "column"
        )
    folder.table("results", results)
    folder.table("summary", summary)
    if not summary.empty:
        phase_plot(
            summary, x, y, metric, comparison, threshold, folder.plots / "phase.png", scenario.name
        )
    folder.report(
        report_text(
            scenario,
            x,
            y,
            seeds,
            metric,
            comparison,
            threshold,
            summary,
            found,
            batch,
            options.backend,
            argv,
        )
    )
    folder.finish(batch)
    return PhaseResult(folder.path, results, summary, found, batch)
