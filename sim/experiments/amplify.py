"""``liqsim amplify``: how much each on-chain friction amplifies a liquidation cascade.

A factorial design on the same seeds. The **frictionless baseline** has

* no gas friction (``run.gas_enabled = false``: no fees, effectively unlimited block space, no
  background demand),
* no oracle lag (``run.oracle_lag_enabled = false``: the on-chain price tracks the external price
  every block),
* no liquidation rush (``liquidators.count = 1``: a single liquidator, nobody to race),
* no endogenous price impact (``run.endogenous_impact = false``: liquidation flow and arbitrage
  hedges do not move the external price).

Each friction is then switched on alone (``gas``; ``oracle_lag``; ``rush`` = the scenario's own
number of liquidators competing in priority gas auctions; ``impact``) and all together (``all``),
each cell under CROSS and under ISOLATED margin: 6 cells x 2 modes. ``--full-factorial`` runs
all 16 combinations. A friction the scenario itself leaves out is switched *on* in its cell (the
experiment is about the frictions, not the scenario's switches), except that ``rush`` needs the
scenario to have more than one liquidator.

The **amplification factor** of a cell for a metric is mean(metric in the cell) / mean(metric in
the baseline) over the same seeds and the same margin mode, with a 95% paired percentile
bootstrap interval (seeds resampled with replacement, both cells with the same draw;
:func:`sim.experiments.stats.ratio_of_means`). It is n/a when the baseline's mean is 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.experiments import plotting
from sim.experiments.common import (
    DEFAULT_RUN_OPTIONS,
    ExperimentFolder,
    RunOptions,
    fmt_value,
    reproduce_block,
)
from sim.experiments.metrics import METRICS
from sim.experiments.runs import Batch, RunSpec
from sim.experiments.stats import mean_ci, ratio_of_means
from sim.output.markdown import markdown_table
from sim.scenario.schema import Scenario

FRICTIONS = ("gas", "oracle_lag", "rush", "impact")
FRICTION_TEXT = {
    "gas": "gas friction: fees, the block gas limit and background demand for block space",
    "oracle_lag": "oracle lag: the reporter writes on deviation/heartbeat through the mempool",
    "rush": "liquidation rush: the scenario's liquidators race in priority gas auctions",
    "impact": "endogenous impact: liquidation flow and arbitrage hedges move the external price",
}
MODES = ("cross", "isolated")
AMPLIFY_METRICS = (
    "liquidations",
    "notional_usd",
    "delay_mean_blocks",
    "delay_max_blocks",
    "bad_debt_usd",
    "negative_equity_usd",
    "insurance_drawdown_usd",
    "losing_liquidator_gas_usd",
)
FACTOR_METRICS = ("liquidations", "notional_usd", "bad_debt_usd", "delay_mean_blocks")


@dataclass
class AmplifyResult:
    folder: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    batch: Batch


def cell_name(frictions: tuple[str, ...]) -> str:
    if not frictions:
        return "baseline"
    if set(frictions) == set(FRICTIONS):
        return "all"
    return "+".join(f for f in FRICTIONS if f in frictions)


def cells(full_factorial: bool = False) -> list[tuple[str, ...]]:
    """The design: baseline, each friction alone, all together (or every combination)."""
    if full_factorial:
        return [c for k in range(len(FRICTIONS) + 1) for c in itertools.combinations(FRICTIONS, k)]
    return [(), *((f,) for f in FRICTIONS), FRICTIONS]


def cell_scenario(scenario: Scenario, frictions: tuple[str, ...], mode: str) -> Scenario:
    on = set(frictions)
    return scenario.with_overrides(
        [
            f"run.gas_enabled={'true' if 'gas' in on else 'false'}",
            f"run.oracle_lag_enabled={'true' if 'oracle_lag' in on else 'false'}",
            f"run.endogenous_impact={'true' if 'impact' in on else 'false'}",
            f"liquidators.count={scenario.liquidators.count if 'rush' in on else 1}",
            f"run.margin_mode_override={mode}",
        ]
    )


def plan(scenario: Scenario, seeds: list[int], full_factorial: bool = False) -> list[RunSpec]:
    specs = []
    for frictions in cells(full_factorial):
        flags = {f: f in frictions for f in FRICTIONS}
        for mode in MODES:
            sc = cell_scenario(scenario, frictions, mode)
            specs += [
                RunSpec.of(sc, seed, cell=cell_name(frictions), mode=mode, **flags)
                for seed in seeds
            ]
    return specs


def summarize_cells(results: pd.DataFrame, cell_order: list[str]) -> pd.DataFrame:
    """Long table: one row per cell, mode and metric: mean with t CI, amplification factor with
    bootstrap CI (vs the baseline of the same mode and seeds)."""
    ok = results[results["state"] == "complete"]
    rows = []
    for mode in MODES:
        m = ok[ok["mode"] == mode]
        for metric in AMPLIFY_METRICS:
            wide = m.pivot_table(
                index="seed", columns="cell", values=metric, aggfunc="first", dropna=False
            )
            base = (
                wide["baseline"].to_numpy(dtype=float)
                if "baseline" in wide
                else np.full(len(wide), np.nan)
            )
            for cell in cell_order:
                vals = (
                    wide[cell].to_numpy(dtype=float) if cell in wide else np.full(len(wide), np.nan)
                )
                level = mean_ci(vals)
                factor = ratio_of_means(vals, base)
                rows.append(
                    {
                        "cell": cell,
                        "mode": mode,
                        "figure": metric,
                        "mean": level.estimate,
                        "mean_ci_low": level.low,
                        "mean_ci_high": level.high,
                        "factor": factor.estimate,
                        "factor_ci_low": factor.low,
                        "factor_ci_high": factor.high,
                        "seeds": level.n,
                        "factor_method": factor.method,
                    }
                )
    return pd.DataFrame(rows)


def _factor_text(r: pd.Series) -> str:
    if np.isnan(r["factor"]):
        return "n/a (baseline 0)" if r["cell"] != "baseline" else "1"
    if r["cell"] == "baseline":
        return "1"
    if np.isnan(r["factor_ci_low"]):
        return f"{r['factor']:.2f}"
    return f"{r['factor']:.2f} [{r['factor_ci_low']:.2f}, {r['factor_ci_high']:.2f}]"


def _headline(summary: pd.DataFrame, cell_order: list[str]) -> list[str]:
    lines = []
    s = summary.set_index(["cell", "mode", "figure"])
    singles = [c for c in cell_order if c in FRICTIONS]
    for mode in MODES:
        parts = []
        if "all" in cell_order:
            for metric in ("liquidations", "notional_usd"):
                r = s.loc[("all", mode, metric)].copy()
                r["cell"] = "all"
                parts.append(f"{METRICS[metric].label} × {_factor_text(r)}")
        best = None
        for c in singles:
            v = s.loc[(c, mode, "notional_usd")]["factor"]
            if not np.isnan(v) and (best is None or v > best[1]):
                best = (c, v)
        text = f"- **{mode.upper()}**: all frictions together: " + (
            "; ".join(parts) if parts else "n/a"
        )
        if best is not None:
            text += (
                f". Largest single amplifier of notional liquidated: `{best[0]}` (× {best[1]:.2f})"
            )
        lines.append(text + ".")
        if "all" in cell_order:
            appear = []
            for metric in ("bad_debt_usd", "negative_equity_usd", "insurance_drawdown_usd"):
                base, full = (
                    s.loc[("baseline", mode, metric)]["mean"],
                    s.loc[("all", mode, metric)]["mean"],
                )
                if base == 0 and full > 0:
                    appear.append(f"{METRICS[metric].label} {fmt_value(metric, full)} USD")
            if appear:
                lines.append(
                    f"  Zero without frictions, present with all of them ({mode.upper()}, mean): "
                    + "; ".join(appear)
                    + "."
                )
    return lines


def _interaction(summary: pd.DataFrame, cell_order: list[str]) -> list[str]:
    singles = [c for c in FRICTIONS if c in cell_order]
    if "all" not in cell_order or len(singles) < len(FRICTIONS):
        return []
    s = summary.set_index(["cell", "mode", "figure"])
    rows = []
    for mode in MODES:
        for metric in ("liquidations", "notional_usd"):
            prod = float(np.prod([s.loc[(c, mode, metric)]["factor"] for c in singles]))
            combined = s.loc[("all", mode, metric)]["factor"]
            rows.append(
                {
                    "mode": mode.upper(),
                    "figure": METRICS[metric].label,
                    "product of single factors": prod,
                    "all combined": combined,
                    "reading": "n/a"
                    if np.isnan(prod) or np.isnan(combined)
                    else (
                        "frictions reinforce each other"
                        if combined > prod * 1.05
                        else "frictions overlap (less than multiplicative)"
                        if combined < prod * 0.95
                        else "about multiplicative"
                    ),
                }
            )
    return [
        "## Do the frictions compound?",
        "",
        "Combined factor against the product of the single-friction factors (point estimates).",
        "",
        markdown_table(
            pd.DataFrame(rows), {"product of single factors": "{:.2f}", "all combined": "{:.2f}"}
        ),
        "",
    ]


def report_text(
    scenario: Scenario,
    seeds: list[int],
    summary: pd.DataFrame,
    cell_order: list[str],
    batch: Batch,
    argv: str,
) -> str:
    s = summary.set_index(["cell", "mode", "figure"])
    factor_rows = []
    for cell in cell_order:
        if cell == "baseline":
            continue
        row = {"cell": cell}
        for mode in MODES:
            for metric in FACTOR_METRICS:
                r = s.loc[(cell, mode, metric)].copy()
                r["cell"] = cell
                row[f"{METRICS[metric].label} ({mode[:3].upper()})"] = _factor_text(r)
        factor_rows.append(row)
    level_rows = []
    for cell in cell_order:
        for mode in MODES:
            row = {"cell": cell, "mode": mode.upper()}
            for metric in AMPLIFY_METRICS:
                row[f"{METRICS[metric].label} ({METRICS[metric].unit})"] = fmt_value(
                    metric, s.loc[(cell, mode, metric)]["mean"]
                )
            level_rows.append(row)
    n = len(seeds)
    warn = []
    if scenario.liquidators.count <= 1:
        warn = [
            "",
            f"**Note:** the scenario has {scenario.liquidators.count} liquidator(s), so the "
            "`rush` cell equals the "
            "baseline (a rush needs rivals). Set `--set liquidators.count=3` to measure it.",
            "",
        ]
    lines = [
        "# Amplification of liquidation cascades by on-chain frictions: scenario "
        f"`{scenario.name}`",
        "",
        f"{len(cell_order)} cells × 2 margin modes × {n} seed{'s' if n != 1 else ''} "
        f"({seeds[0]}..{seeds[-1]}); "
        f"{scenario.run.blocks} blocks and {scenario.traders.count} traders per run. "
        f"{batch.executed} runs executed now, "
        f"{batch.skipped} reused"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + ".",
        *warn,
        "",
        "**Amplification factor** = mean of a figure with the friction(s) ÷ its mean in the "
        "frictionless baseline "
        "(same seeds, same margin mode). Brackets: 95% paired bootstrap interval across seeds "
        f"({'n/a with one seed' if n < 2 else 'percentile, 2000 resamples'}). 1 = no "
        "amplification.",
        "",
        "## Headline",
        "",
        *_headline(summary, cell_order),
        "",
        "## Amplification factors",
        "",
        markdown_table(pd.DataFrame(factor_rows)),
        "",
        "![amplification factors](plots/amplify.png)",
        "",
        "## Figures per cell (means over seeds)",
        "",
        markdown_table(pd.DataFrame(level_rows)),
        "",
        "![figures per cell](plots/amplify_figures.png)",
        "",
        *_interaction(summary, cell_order),
        "## The cells",
        "",
        "- `baseline`: no gas cost and unlimited block space, oracle = external price every "
        "block, one liquidator, "
        "no endogenous price impact.",
        *[f"- `{f}`: {FRICTION_TEXT[f]}." for f in FRICTIONS],
        "- `all`: the four together (the scenario as a protocol would live it).",
        "",
        "Delay = blocks between an account becoming liquidatable (on the exchange's price) and "
        "its liquidation. "
        "Bad debt = negative equity at liquidation the insurance fund could not cover; "
        "unliquidated negative equity = "
        "trader subaccounts still under water at the end that nobody liquidated (a liquidator "
        "earns nothing from them). "
        "Gas burned by losing liquidators = fees of reverted liquidation attempts (lost races), "
        "in USD.",
        "",
        reproduce_block(argv),
    ]
    return "\n".join(lines)


def run_amplify(
    scenario: Scenario,
    seeds: list[int],
    out: str | Path,
    options: RunOptions = DEFAULT_RUN_OPTIONS,
    *,
    full_factorial: bool = False,
    argv: str = "",
) -> AmplifyResult:
    folder = ExperimentFolder(out)
    order = [cell_name(c) for c in cells(full_factorial)]
    batch, results = folder.execute(
        "amplify",
        scenario,
        plan(scenario, seeds, full_factorial),
        {"seeds": seeds, "cells": order, "modes": list(MODES), "full_factorial": full_factorial},
        options,
    )
    summary = summarize_cells(results, order)
    folder.table("results", results)
    folder.table("summary", summary)
    plotting.amplify_factor_plot(
        summary, FACTOR_METRICS, order, folder.plots / "amplify.png", scenario.name
    )
    plotting.amplify_levels_plot(
        summary, AMPLIFY_METRICS, order, folder.plots / "amplify_figures.png", scenario.name
    )
    folder.report(report_text(scenario, seeds, summary, order, batch, argv))
    folder.finish(batch)
    return AmplifyResult(folder.path, results, summary, batch)
