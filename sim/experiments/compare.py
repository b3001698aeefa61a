"""``liqsim compare``: CROSS versus ISOLATED margin on the same seeds (common random numbers).

Every seed is run twice, once with every trader's subaccounts forced CROSS and once ISOLATED
(``run.margin_mode_override``). The model draws the exogenous price path, the traders and the
agents' parameters from separate seeded streams that do not depend on the margin mode, so the
two arms of a seed see the same exogenous prices and hold the same traders; they differ by the
mode and by what the mode causes (liquidations, their price impact, agents' reactions).

For each key metric the report gives the mean paired difference ISOLATED - CROSS over seeds
with a 95% Student t interval (n/a with one seed). Every pair is checked: its two runs must
have identical exogenous prices and trader draws (``crn_prices_identical``,
``crn_traders_identical`` in the results table).
"""

from __future__ import annotations

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
from sim.experiments.stats import mean_ci, paired_difference
from sim.output.markdown import markdown_table
from sim.scenario.schema import Scenario

ARMS = ("cross", "isolated")
COMPARE_METRICS = (
    "liquidations",
    "notional_usd",
    "bad_debt_usd",
    "negative_equity_usd",
    "trader_losses_usd",
    "contagion_positions",
    "contagion_notional_usd",
    "capital_needed_usd",
    "liquidated_accounts",
    "delay_mean_blocks",
    "insurance_drawdown_usd",
)
PLOT_METRICS = (
    "liquidations",
    "notional_usd",
    "bad_debt_usd",
    "trader_losses_usd",
    "contagion_positions",
    "capital_needed_usd",
)


@dataclass
class CompareResult:
    folder: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    batch: Batch


def plan(scenario: Scenario, seeds: list[int]) -> list[RunSpec]:
    return [
        RunSpec.of(scenario.with_overrides([f"run.margin_mode_override={arm}"]), seed, arm=arm)
        for seed in seeds
        for arm in ARMS
    ]


def _same_frame(a: Path, b: Path, drop: tuple[str, ...] = ()) -> bool:
    if not (a.is_file() and b.is_file()):
        return False
    fa, fb = (
        pd.read_parquet(a).drop(columns=list(drop)),
        pd.read_parquet(b).drop(columns=list(drop)),
    )
    return (
        fa.shape == fb.shape
        and list(fa.columns) == list(fb.columns)
        and bool(all(np.array_equal(fa[c].to_numpy(), fb[c].to_numpy()) for c in fa.columns))
    )


def crn_check(results: pd.DataFrame, base: Path) -> pd.DataFrame:
    """Add ``crn_prices_identical`` / ``crn_traders_identical`` per seed (read from run folders)."""
    results = results.copy()
    results["crn_prices_identical"] = False
    results["crn_traders_identical"] = False
    for seed, g in results.groupby("seed"):
        arms = {r["arm"]: base / r["run_folder"] for _, r in g.iterrows()}
        if set(arms) != set(ARMS):
            continue
        prices = _same_frame(
            arms["cross"] / "exogenous.parquet", arms["isolated"] / "exogenous.parquet"
        )
        traders = _same_frame(
            arms["cross"] / "traders.parquet", arms["isolated"] / "traders.parquet", drop=("mode",)
        )
        results.loc[results["seed"] == seed, "crn_prices_identical"] = prices
        results.loc[results["seed"] == seed, "crn_traders_identical"] = traders
    return results


def summarize_pairs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: means per arm, mean paired difference ISOLATED - CROSS and its CI."""
    ok = results[results["state"] == "complete"]
    rows = []
    for metric in COMPARE_METRICS:
        wide = ok.pivot_table(
            index="seed", columns="arm", values=metric, aggfunc="first", dropna=False
        )
        if not set(ARMS) <= set(wide.columns):
            wide = wide.reindex(columns=list(ARMS))
        cross, iso = wide["cross"].to_numpy(dtype=float), wide["isolated"].to_numpy(dtype=float)
        d = paired_difference(iso, cross)
        mc, mi = mean_ci(cross), mean_ci(iso)
        rows.append(
            {
                "figure": metric,
                "label": METRICS[metric].label,
                "unit": METRICS[metric].unit,
                "cross_mean": mc.estimate,
                "isolated_mean": mi.estimate,
                "diff_mean": d.estimate,
                "diff_ci_low": d.low,
                "diff_ci_high": d.high,
                "diff_relative": d.estimate / mc.estimate
                if mc.estimate not in (0.0,) and not np.isnan(mc.estimate)
                else np.nan,
                "pairs": d.n,
                "method": d.method + " (95%)",
            }
        )
    return pd.DataFrame(rows)


def _interval_text(row: pd.Series) -> str:
    metric = row["figure"]
    if np.isnan(row["diff_mean"]):
        return "n/a"
    est = fmt_value(metric, row["diff_mean"])
    if np.isnan(row["diff_ci_low"]):
        return f"{est} (CI n/a: {int(row['pairs'])} seed)"
    low, high = fmt_value(metric, row["diff_ci_low"]), fmt_value(metric, row["diff_ci_high"])
    return f"{est} [{low}, {high}]"


def report_text(
    scenario: Scenario,
    seeds: list[int],
    results: pd.DataFrame,
    summary: pd.DataFrame,
    batch: Batch,
    argv: str,
) -> str:
    crn_ok = bool(results["crn_prices_identical"].all() and results["crn_traders_identical"].all())
    table = pd.DataFrame(
        {
            "figure": summary["label"] + " (" + summary["unit"] + ")",
            "CROSS mean": [
                fmt_value(f, v)
                for f, v in zip(summary["figure"], summary["cross_mean"], strict=True)
            ],
            "ISOLATED mean": [
                fmt_value(f, v)
                for f, v in zip(summary["figure"], summary["isolated_mean"], strict=True)
            ],
            "ISOLATED - CROSS [95% CI]": [_interval_text(r) for _, r in summary.iterrows()],
        }
    )
    n = len(seeds)
    lines = [
        f"# CROSS versus ISOLATED margin: scenario `{scenario.name}`",
        "",
        f"{n} seed{'s' if n != 1 else ''} ({seeds[0]}..{seeds[-1]}), each run twice: every "
        "trader's subaccounts CROSS, then "
        "ISOLATED (same traders, same exposure and the same deposited collateral; an ISOLATED "
        "trader splits it evenly "
        f"over its markets). {scenario.run.blocks} blocks, {scenario.traders.count} traders per "
        "run. "
        f"{batch.executed} runs executed now, {batch.skipped} reused from earlier invocations"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + ".",
        "",
        "Common random numbers: "
        + (
            "every pair had identical exogenous price paths and trader draws (checked from the "
            "run folders)."
            if crn_ok
            else "**a pair differs in its exogenous prices or trader draws** "
            "(see results.csv: crn_* columns)."
        ),
        "",
        "Differences are ISOLATED minus CROSS, averaged over seeds, with a 95% Student t "
        "interval across seeds "
        "(n/a with one seed). A positive difference means ISOLATED had more of it.",
        "",
        markdown_table(table),
        "",
        "![paired figures](plots/compare.png)",
        "",
        "## Definitions",
        "",
        "- *Liquidations*: liquidation transactions (each closes every position of one "
        "subaccount); "
        "*notional*: notional closed, USD.",
        "- *Bad debt*: negative equity at liquidation that the insurance fund could not cover. "
        "*Unliquidated negative equity*: negative equity of trader subaccounts nobody liquidated "
        "by the end.",
        "- *Trader losses*: deposits - withdrawals - final equity, summed over traders' "
        "subaccounts (negative = gains).",
        "- *Contagion positions*: positions closed by a CROSS liquidation that, with their "
        "notional-weighted share "
        "of the collateral, would have met their own maintenance requirement as isolated "
        "positions (the loss came "
        "from another market). Zero by construction under ISOLATED.",
        "- *Capital needed for the same exposure*: per trader, the smallest collateral that "
        "opens its drawn positions "
        "(initial margin) and keeps every subaccount at or above maintenance over the holding "
        "period on the run's "
        "margin-price path; summed over traders (CROSS: one pool, ISOLATED: per position). See "
        "docs/experiments.md.",
        "",
        reproduce_block(argv),
    ]
    return "\n".join(lines)


def run_compare(
    scenario: Scenario,
    seeds: list[int],
    out: str | Path,
    options: RunOptions = DEFAULT_RUN_OPTIONS,
    *,
    argv: str = "",
) -> CompareResult:
    folder = ExperimentFolder(out)
    batch, results = folder.execute(
        "compare",
        scenario,
        plan(scenario, seeds),
        {"seeds": seeds, "arms": list(ARMS)},
        options,
    )
    results = crn_check(results, folder.path)
    summary = summarize_pairs(results)
    folder.table("results", results)
    folder.table("summary", summary)
    plotting.compare_plot(
        results, summary, PLOT_METRICS, folder.plots / "compare.png", scenario.name
    )
    folder.report(report_text(scenario, seeds, results, summary, batch, argv))
    folder.finish(
        batch,
        crn_identical=bool(
            results["crn_prices_identical"].all() and results["crn_traders_identical"].all()
        ),
    )
    return CompareResult(folder.path, results, summary, batch)
