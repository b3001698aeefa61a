"""``liqsim sweep``: a grid of scenario parameters × seeds, in parallel, resumable.

``--grid path.to.param=v1,v2,...`` (repeatable) names any scenario parameter by the dotted path
``--set`` uses (``oracle.deviation_threshold``, ``chain.block_gas_limit``,
``background.crash_utilization``, ``liquidators.count``, ``markets.0.maintenance_margin``,
``traders.leverage_max``, ``run.margin_mode_override``, ...). The sweep runs the cartesian
product of the grids, each point with every seed. Each run is keyed by its resolved scenario's
fingerprint and its seed, so a rerun (or a wider grid) executes only the runs that are missing.

Backends: ``local`` (processes on this machine, spawn start method) or ``ray`` (Ray tasks on a
local instance started with ``num_cpus = --workers``, or on a running cluster with
``--ray-address``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.experiments import plotting
from sim.experiments.common import (
    DEFAULT_RUN_OPTIONS,
    ExperimentFolder,
    RunOptions,
    reproduce_block,
)
from sim.experiments.metrics import METRICS
from sim.experiments.runs import Batch, RunSpec
from sim.experiments.stats import mean_ci
from sim.output.markdown import markdown_table
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario

SWEEP_METRICS = (
    "liquidations",
    "notional_usd",
    "bad_debt_usd",
    "negative_equity_usd",
    "delay_mean_blocks",
    "delay_max_blocks",
    "insurance_drawdown_usd",
    "trader_losses_usd",
    "contagion_positions",
    "losing_liquidator_gas_usd",
    "oracle_mean_age_s",
    "failed_tx_share",
)
PLOT_METRICS = ("liquidations", "notional_usd", "bad_debt_usd", "delay_mean_blocks")


@dataclass
class SweepResult:
    folder: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    batch: Batch


def parse_grid(text: str) -> tuple[str, list[str]]:
    """``"path=v1,v2"`` -> ``("path", ["v1", "v2"])``."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError("--grid", f"expected PATH=V1,V2,..., got {text!r}")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not vals:
        raise ConfigError("--grid", f"no values for {path!r} in {text!r}")
    if len(set(vals)) != len(vals):
        raise ConfigError("--grid", f"duplicate values for {path!r} in {text!r}")
    return path, vals


def parse_grids(texts: list[str]) -> dict[str, list[str]]:
    if not texts:
        raise ConfigError("--grid", "at least one --grid PATH=V1,V2,... is required")
    grids: dict[str, list[str]] = {}
    for t in texts:
        path, vals = parse_grid(t)
        if path in grids:
            raise ConfigError("--grid", f"{path!r} is given twice")
        grids[path] = vals
    return grids


def _value_at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list | tuple) else data[part]
    return data


def grid_points(
    scenario: Scenario, grids: dict[str, list[str]]
) -> list[tuple[dict[str, Any], Scenario]]:
    """Every grid point with its validated scenario; the labels are the resolved (typed) values."""
    points = []
    for combo in itertools.product(*grids.values()):
        overrides = [f"{p}={v}" for p, v in zip(grids, combo, strict=True)]
        sc = scenario.with_overrides(overrides)
        data = sc.to_dict()
        labels = {p: _value_at(data, p) for p in grids}
        points.append((labels, sc))
    return points


def plan(scenario: Scenario, grids: dict[str, list[str]], seeds: list[int]) -> list[RunSpec]:
    return [
        RunSpec.of(sc, seed, **labels)
        for labels, sc in grid_points(scenario, grids)
        for seed in seeds
    ]


def summarize_grid(results: pd.DataFrame, params: list[str], metrics=SWEEP_METRICS) -> pd.DataFrame:
    ok = results[results["state"] == "complete"]
    rows = []
    for raw, g in ok.groupby(params, sort=False, dropna=False):
        key = raw if isinstance(raw, tuple) else (raw,)
        row: dict[str, Any] = dict(zip(params, key, strict=True))
        row["seeds"] = len(g)
        for f in metrics:
            iv = mean_ci(g[f].to_numpy(dtype=float))
            row[f"{f}_mean"], row[f"{f}_ci_low"], row[f"{f}_ci_high"] = iv.estimate, iv.low, iv.high
        rows.append(row)
    return pd.DataFrame(rows)


def report_text(
    scenario: Scenario,
    grids: dict[str, list[str]],
    seeds: list[int],
    summary: pd.DataFrame,
    batch: Batch,
    backend: str,
    argv: str,
    metrics: tuple[str, ...] = PLOT_METRICS,
) -> str:
    params = list(grids)
    show = (
        summary[[*params, "seeds", *(f"{f}_mean" for f in metrics)]].rename(
            columns={f"{f}_mean": f"{METRICS[f].label} ({METRICS[f].unit})" for f in metrics}
        )
        if not summary.empty
        else pd.DataFrame({"result": ["no run completed"]})
    )
    formats = {f"{METRICS[f].label} ({METRICS[f].unit})": METRICS[f].fmt for f in metrics}
    points = len(summary)
    lines = [
        f"# Sweep of {', '.join(f'`{p}`' for p in params)}: scenario `{scenario.name}`",
        "",
        "Grid: "
        + "; ".join(f"`{p}` = {', '.join(v)}" for p, v in grids.items())
        + f" ({points} points) × "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({seeds[0]}..{seeds[-1]}), backend "
        f"`{backend}`. "
        f"{batch.executed} runs executed now, {batch.skipped} reused from earlier invocations"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + ".",
        "",
        "Means over seeds (summary.csv also has 95% t intervals and more figures; results.csv "
        "has one row per run).",
        "",
        markdown_table(show, formats),
        "",
        "![sweep](plots/sweep.png)",
        "",
        reproduce_block(argv),
    ]
    return "\n".join(lines)


def run_sweep(
    scenario: Scenario,
    grids: dict[str, list[str]],
    seeds: list[int],
    out: str | Path,
    options: RunOptions = DEFAULT_RUN_OPTIONS,
    *,
    plot_metrics: tuple[str, ...] = PLOT_METRICS,
    argv: str = "",
) -> SweepResult:
    for f in plot_metrics:
        if f not in METRICS:
            raise ConfigError("--figures", f"unknown figure {f!r} (known: {', '.join(METRICS)})")
    specs = plan(scenario, grids, seeds)  # validates every grid point before anything runs
    folder = ExperimentFolder(out)
    batch, results = folder.execute(
        "sweep",
        scenario,
        specs,
        {"grid": grids, "seeds": seeds},
        options,
    )
    params = list(grids)
    metrics = tuple(dict.fromkeys((*SWEEP_METRICS, *plot_metrics)))
    summary = summarize_grid(results, params, metrics)
    folder.table("results", results)
    folder.table("summary", summary)
    if not summary.empty:
        plotting.sweep_plot(
            summary, params, plot_metrics, folder.plots / "sweep.png", scenario.name
        )
    folder.report(
        report_text(scenario, grids, seeds, summary, batch, options.backend, argv, plot_metrics)
    )
    folder.finish(batch)
    return SweepResult(folder.path, results, summary, batch)
