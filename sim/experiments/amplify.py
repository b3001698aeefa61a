"""``liqsim amplify``: how much each on-chain friction amplifies a liquidation cascade.

A two-level **full factorial** in four frictions, under CROSS and under ISOLATED margin, every
cell on the same seeds (common random numbers: the same price path and traders in every cell
of a seed): 16 cells x 2 modes per seed. ``short=True`` (``--cells``) runs the short design
instead: the baseline, each friction alone and all four (6 cells x 2 modes).

The **frictionless baseline** has every friction off:

* no gas friction (``run.gas_enabled = false``: no fees, a block gas limit no run fills, no
  background demand for block space),
* no oracle lag (``run.oracle_lag_enabled = false``: the on-chain price is the external price,
  written every block),
* no liquidation rush: one liquidator that reacts at once (``liquidators.count = 1``,
  ``latency_blocks_min = latency_blocks_max = 0``),
* no endogenous price impact (``run.endogenous_impact = false``).

In it every liquidation happens :data:`MIN_DELAY_BLOCKS` block after its account became
liquidatable, the model's minimum (the account is seen liquidatable at the end of a block; the
liquidator acts in the next one); the report checks this on every baseline run.

The frictions: ``gas``; ``oracle_lag``; ``rush`` = the scenario's liquidators as the scenario
configures them, its number of bots racing in priority gas auctions *and* their reaction
latencies (drawn in ``latency_blocks_min..max``): the scenario's liquidation market against an
ideal instant liquidator. (To measure the race alone, set both latencies to 0 with ``--set``;
the baseline is the same either way.) ``impact``: liquidation flow and arbitrage hedges move
the external price. A friction the scenario itself switches off is switched *on* in its cells:
the experiment is about the frictions, not the scenario's switches.

Estimates (:mod:`sim.experiments.factorial`, :mod:`sim.experiments.power`): main effects and
two-way interactions (factorial contrasts within each seed, averaged over seeds with a paired t
interval), with the minimum detectable effect of the design at 80% power; and, per cell, the
**amplification factor** mean(cell) / mean(baseline) (same seeds and mode) with a paired
percentile bootstrap interval (:func:`sim.experiments.stats.ratio_of_means`; n/a when the
baseline's mean is 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.experiments import factorial_plot, plotting
from sim.experiments.common import (
    DEFAULT_RUN_OPTIONS,
    ExperimentFolder,
    RunOptions,
    fmt_value,
    reproduce_block,
)
from sim.experiments.factorial import INTERACTION_SIGN, effects_table, full_design
from sim.experiments.metrics import METRICS
from sim.experiments.power import TARGET, power_gaps, power_note
from sim.experiments.runs import Batch, RunSpec
from sim.experiments.stats import mean_ci, ratio_of_means
from sim.output.markdown import markdown_table
from sim.scenario.schema import Scenario

FRICTIONS = ("gas", "oracle_lag", "rush", "impact")
FRICTION_TEXT = {
    "gas": "gas friction: fees, the block gas limit and background demand for block space",
    "oracle_lag": "oracle lag: the reporter writes on deviation/heartbeat through the mempool",
    "rush": "liquidation rush: the scenario's liquidators, with their reaction latencies, race "
    "in priority gas auctions",
    "impact": "endogenous impact: liquidation flow and arbitrage hedges move the external price",
}
MODES = ("cross", "isolated")
#: Blocks from an account becoming liquidatable to its liquidation with no friction at all.
MIN_DELAY_BLOCKS = 1
#: Every figure of the levels table, the factors and summary.csv.
AMPLIFY_METRICS = (
    "liquidations",
    "notional_usd",
    "delay_mean_blocks",
    "delay_max_blocks",
    "shortfall_peak_usd",
    "negative_equity_peak_usd",
    "bad_debt_usd",
    "negative_equity_usd",
    "trader_losses_usd",
    "insurance_drawdown_usd",
    "losing_liquidator_gas_usd",
)
#: The figures whose effects, interactions and power are estimated (losses first).
EFFECT_METRICS = (
    "shortfall_peak_usd",
    "negative_equity_peak_usd",
    "bad_debt_usd",
    "trader_losses_usd",
    "notional_usd",
    "liquidations",
    "delay_mean_blocks",
)
FACTOR_METRICS = ("liquidations", "notional_usd", "shortfall_peak_usd", "delay_mean_blocks")


@dataclass
class AmplifyResult:
    folder: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    effects: pd.DataFrame
    power_note: str
    batch: Batch


def cell_name(frictions: tuple[str, ...]) -> str:
    if not frictions:
        return "baseline"
    if set(frictions) == set(FRICTIONS):
        return "all"
    return "+".join(f for f in FRICTIONS if f in frictions)


def cells(short: bool = False) -> list[tuple[str, ...]]:
    """The design: every combination of the frictions (16 cells), or with ``short`` the
    baseline, each friction alone and all together."""
    if short:
        return [(), *((f,) for f in FRICTIONS), FRICTIONS]
    return full_design(FRICTIONS)


def _liquidator_overrides(scenario: Scenario, rush: bool) -> list[str]:
    """Rush on: the scenario's liquidators as configured (count and reaction latency). Off: one
    liquidator that reacts at once (latency 0), the model's minimum delay."""
    lq = scenario.liquidators
    if rush:
        return [
            f"liquidators.count={lq.count}",
            f"liquidators.latency_blocks_min={lq.latency_blocks_min}",
            f"liquidators.latency_blocks_max={lq.latency_blocks_max}",
        ]
    return [
        "liquidators.count=1",
        "liquidators.latency_blocks_min=0",
        "liquidators.latency_blocks_max=0",
    ]


def cell_scenario(scenario: Scenario, frictions: tuple[str, ...], mode: str) -> Scenario:
    on = set(frictions)
    return scenario.with_overrides(
        [
            f"run.gas_enabled={'true' if 'gas' in on else 'false'}",
            f"run.oracle_lag_enabled={'true' if 'oracle_lag' in on else 'false'}",
            f"run.endogenous_impact={'true' if 'impact' in on else 'false'}",
            *_liquidator_overrides(scenario, "rush" in on),
            f"run.margin_mode_override={mode}",
        ]
    )


def plan(scenario: Scenario, seeds: list[int], short: bool = False) -> list[RunSpec]:
    specs = []
    for frictions in cells(short):
        flags = {f: f in frictions for f in FRICTIONS}
        for mode in MODES:
            sc = cell_scenario(scenario, frictions, mode)
            specs += [
                RunSpec.of(sc, seed, cell=cell_name(frictions), mode=mode, **flags)
                for seed in seeds
            ]
    return specs


# ------------------------------------------------------------------ estimates


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


def summarize_effects(results: pd.DataFrame, short: bool = False) -> pd.DataFrame:
    """Main effects and two-way interactions (full factorial) or each cell against the baseline
    (short design), per mode and figure, with paired t intervals and the MDE
    (:func:`sim.experiments.factorial.effects_table`). A failed run leaves its seed out of
    every contrast it enters."""
    ok = results[results["state"] == "complete"]
    short_cells = [cell_name(c) for c in cells(short=True) if c] if short else None
    return effects_table(ok, FRICTIONS, EFFECT_METRICS, group="mode", short_cells=short_cells)


@dataclass(frozen=True)
class DelayCheck:
    """Liquidation delays in the frictionless baseline runs (kind ``liquidation``: backstops
    and deleveragings follow the keeper's own delay)."""

    liquidations: int
    at_minimum: int
    max_delay: float
    runs: int

    @property
    def ok(self) -> bool:
        return self.liquidations == self.at_minimum


def baseline_delay_check(folder: Path, results: pd.DataFrame) -> DelayCheck:
    """Every liquidation of every completed baseline run, read from its ``liquidations.parquet``."""
    base = results[(results["cell"] == "baseline") & (results["state"] == "complete")]
    n = at_min = 0
    worst = math.nan
    for rel in base["run_folder"]:
        path = Path(rel) if Path(rel).is_absolute() else folder / rel
        liq = pd.read_parquet(path / "liquidations.parquet")
        delays = liq.loc[liq["kind"] == "liquidation", "delay_blocks"]
        n += len(delays)
        at_min += int((delays == MIN_DELAY_BLOCKS).sum())
        if len(delays):
            worst = float(delays.max()) if math.isnan(worst) else max(worst, float(delays.max()))
    return DelayCheck(n, at_min, worst, len(base))


# ------------------------------------------------------------------ report


def _factor_text(r: pd.Series) -> str:
    if np.isnan(r["factor"]):
        return "n/a (baseline 0)" if r["cell"] != "baseline" else "1"
    if r["cell"] == "baseline":
        return "1"
    if np.isnan(r["factor_ci_low"]):
        return f"{r['factor']:.2f}"
    return f"{r['factor']:.2f} [{r['factor_ci_low']:.2f}, {r['factor_ci_high']:.2f}]"


def _number(metric: str, v: float) -> str:
    """``v`` in the figure's format, without the sign of a value that rounds to 0."""
    text = fmt_value(metric, v)
    return text.lstrip("-") if text.strip("-0.,") == "" else text


def _signed(metric: str, v: float) -> str:
    text = _number(metric, v)
    return text if text == "n/a" or text.startswith("-") or text.strip("0.,") == "" else f"+{text}"


def effect_text(metric: str, r: pd.Series) -> str:
    """'+est [low, high]' in the figure's format; '*' when the interval excludes 0."""
    if np.isnan(r["estimate"]):
        return "n/a"
    est = _signed(metric, r["estimate"])
    if np.isnan(r["ci_low"]):
        return est
    mark = " *" if r["ci_low"] > 0 or r["ci_high"] < 0 else ""
    return f"{est} [{_number(metric, r['ci_low'])}, {_number(metric, r['ci_high'])}]{mark}"


def _label(metric: str) -> str:
    return f"{METRICS[metric].label} ({METRICS[metric].unit})"


def _effects_section(effects: pd.DataFrame, kind: str) -> str:
    """Wide table: one row per figure and mode, one column per effect of ``kind``."""
    e = effects[effects["kind"] == kind]
    names = list(dict.fromkeys(e["effect"]))
    rows = []
    for metric in EFFECT_METRICS:
        for mode in MODES:
            sub = e[(e["figure"] == metric) & (e["mode"] == mode)].set_index("effect")
            row = {"figure": _label(metric), "mode": mode.upper()}
            for name in names:
                row[f"`{name}`"] = (
                    effect_text(metric, sub.loc[name]) if name in sub.index else "n/a"
                )
            rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def _power_table(effects: pd.DataFrame) -> str:
    """Per figure and mode: baseline mean, the largest SD and MDE over the main (or vs-baseline)
    effects, that MDE as a share of the baseline mean, and the largest MDE of the
    interactions."""
    rows = []
    for metric in EFFECT_METRICS:
        for mode in MODES:
            sub = effects[(effects["figure"] == metric) & (effects["mode"] == mode)]
            main = sub[sub["kind"].isin(("main", "vs baseline"))]
            inter = sub[sub["kind"] == "interaction"]
            if main.empty:
                continue
            ref = abs(float(main["baseline_mean"].iloc[0]))
            mde = float(main["mde"].max())
            rows.append(
                {
                    "figure": _label(metric),
                    "mode": mode.upper(),
                    "baseline mean": fmt_value(metric, main["baseline_mean"].iloc[0]),
                    "paired SD (largest)": fmt_value(metric, float(main["sd"].max())),
                    "MDE, main effects": fmt_value(metric, mde),
                    "MDE / baseline mean": "n/a (baseline 0)"
                    if ref == 0 or math.isnan(ref)
                    else ("n/a" if math.isnan(mde) else f"{mde / ref:.0%}"),
                    "MDE, interactions": fmt_value(metric, float(inter["mde"].max()))
                    if len(inter)
                    else "not estimable",
                }
            )
    return markdown_table(pd.DataFrame(rows))


def _headline(effects: pd.DataFrame, summary: pd.DataFrame, short: bool) -> list[str]:
    """Per mode: the effects on the loss figures whose interval excludes 0, and the combined
    factor of all four frictions on the notional liquidated and the peak shortfall."""
    lines = []
    s = summary.set_index(["cell", "mode", "figure"])
    wanted = ("main",) if not short else ("vs baseline",)
    for mode in MODES:
        parts = []
        for metric in (
            "shortfall_peak_usd",
            "negative_equity_peak_usd",
            "notional_usd",
            "liquidations",
        ):
            e = effects[
                (effects["mode"] == mode)
                & (effects["figure"] == metric)
                & effects["kind"].isin((*wanted, "interaction"))
            ]
            clear = e[(e["ci_low"] > 0) | (e["ci_high"] < 0)]
            if clear.empty:
                parts.append(f"{METRICS[metric].label}: no effect distinguishable from 0")
            else:
                parts.append(
                    f"{METRICS[metric].label}: "
                    + ", ".join(
                        f"`{r['effect']}` {effect_text(metric, r)}" for _, r in clear.iterrows()
                    )
                )
        factors = []
        for metric in ("notional_usd", "shortfall_peak_usd"):
            r = s.loc[("all", mode, metric)].copy()
            r["cell"] = "all"
            factors.append(f"{METRICS[metric].label} × {_factor_text(r)}")
        lines.append(f"- **{mode.upper()}**: " + "; ".join(parts) + ".")
        lines.append(f"  All four frictions against the baseline: {'; '.join(factors)}.")
    return lines


def _compounding(summary: pd.DataFrame) -> list[str]:
    """Short design: the combined factor against the product of the single factors."""
    s = summary.set_index(["cell", "mode", "figure"])
    rows = []
    for mode in MODES:
        for metric in ("liquidations", "notional_usd"):
            prod = float(np.prod([s.loc[(c, mode, metric)]["factor"] for c in FRICTIONS]))
            combined = s.loc[("all", mode, metric)]["factor"]
            rows.append(
                {
                    "mode": mode.upper(),
                    "figure": METRICS[metric].label,
                    "product of single factors": prod,
                    "all combined": combined,
                }
            )
    return [
        "## Do the frictions compound?",
        "",
        "Combined factor against the product of the single-friction factors (point estimates; "
        "the short design cannot estimate interactions: run the full factorial for them).",
        "",
        markdown_table(
            pd.DataFrame(rows), {"product of single factors": "{:.2f}", "all combined": "{:.2f}"}
        ),
        "",
    ]


def _delay_text(check: DelayCheck) -> str:
    if check.liquidations == 0:
        return f"The {check.runs} baseline runs liquidated nobody: no delay to check."
    if check.ok:
        return (
            f"Check: all {check.liquidations} liquidations of the {check.runs} baseline runs "
            f"happened {MIN_DELAY_BLOCKS} block after their account became liquidatable, the "
            "model's minimum."
        )
    return (
        f"**Check failed:** {check.liquidations - check.at_minimum} of {check.liquidations} "
        f"liquidations of the baseline runs waited more than the minimum {MIN_DELAY_BLOCKS} "
        f"block (worst {check.max_delay:.0f}): the baseline is not frictionless."
    )


def report_text(
    scenario: Scenario,
    seeds: list[int],
    summary: pd.DataFrame,
    effects: pd.DataFrame,
    note: str,
    check: DelayCheck,
    batch: Batch,
    argv: str,
    short: bool = False,
) -> str:
    cell_order = [cell_name(c) for c in cells(short)]
    s = summary.set_index(["cell", "mode", "figure"])
    factor_rows = []
    for cell in cell_order[1:]:
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
                row[_label(metric)] = fmt_value(metric, s.loc[(cell, mode, metric)]["mean"])
            level_rows.append(row)
    n = len(seeds)
    lq = scenario.liquidators
    warn = []
    if lq.count <= 1:
        warn = [
            "",
            f"**Note:** the scenario has {lq.count} liquidator(s), so `rush` adds no rival, only "
            f"the reaction latency ({lq.latency_blocks_min}..{lq.latency_blocks_max} blocks). Set "
            "`--set liquidators.count=3` to measure a race.",
        ]
    design = (
        "Short design: the baseline, each friction alone and all four"
        if short
        else "Full factorial: every combination of the four frictions"
    )
    if short:
        effect_sections = [
            "## Each cell against the baseline",
            "",
            "Mean over seeds of (figure in the cell − figure in the baseline), same seed and "
            "margin mode, with a 95% paired t interval; `*`: the interval excludes 0.",
            "",
            _effects_section(effects, "vs baseline"),
            "",
        ]
    else:
        effect_sections = [
            "## Main effects",
            "",
            "Main effect of a friction = mean of the figure over the 8 cells with it − mean over "
            "the 8 cells without it, computed within each seed and averaged over seeds; 95% "
            "paired t interval across seeds; `*`: the interval excludes 0.",
            "",
            _effects_section(effects, "main"),
            "",
            "![main effects and interactions](plots/amplify_effects.png)",
            "",
            "## Two-way interactions",
            "",
            f"Interaction `A{INTERACTION_SIGN}B` = (effect of A with B on − effect of A with B "
            "off) / 2, each averaged over the other two frictions, within each seed; 95% paired "
            "t interval. Positive: the two frictions together do more than the sum of their "
            "effects (`gas×oracle_lag`: congestion delaying the oracle).",
            "",
            _effects_section(effects, "interaction"),
            "",
        ]
    lines = [
        "# Amplification of liquidation cascades by on-chain frictions: scenario "
        f"`{scenario.name}`",
        "",
        f"{design}: {len(cell_order)} cells × 2 margin modes × {n} seed{'s' if n != 1 else ''} "
        f"({seeds[0]}..{seeds[-1]}), every cell on the same seeds (common random numbers); "
        f"{scenario.run.blocks} blocks and {scenario.traders.count} traders per run. "
        f"{batch.executed} runs executed now, {batch.skipped} reused"
        + (f", **{len(batch.failed)} failed** (see experiment.json)" if batch.failed else "")
        + ".",
        *warn,
        "",
        "## Headline",
        "",
        *_headline(effects, summary, short),
        "",
        "## Power",
        "",
        note,
        "",
        "Minimum detectable effect (MDE) = (t(0.975, n−1) + t(0.80, n−1)) × SD of the per-seed "
        "contrasts / √n: the smallest true effect this design detects 80% of the time at a "
        "two-sided 5% level; the target applies to figures the baseline has (a share of 0 is "
        "no scale).",
        "",
        _power_table(effects),
        "",
        *effect_sections,
        "## Amplification factors",
        "",
        "Factor = mean of a figure in the cell ÷ its mean in the frictionless baseline (same "
        "seeds, same margin mode); 95% paired percentile bootstrap interval "
        f"({'n/a with one seed' if n < 2 else '2000 resamples'}). 1 = no amplification.",
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
        *(_compounding(summary) if short else []),
        "## The cells",
        "",
        "- `baseline` (frictionless): no gas cost, unlimited block space, no background demand; "
        "oracle = external price every block; one liquidator with no reaction latency; no "
        f"endogenous price impact. {_delay_text(check)}",
        *[f"- `{f}`: {FRICTION_TEXT[f]}." for f in FRICTIONS],
        f"  Here: {lq.count} liquidator(s), latency "
        f"{lq.latency_blocks_min}..{lq.latency_blocks_max} blocks.",
        "- `all`: the four together (the scenario as a protocol would live it).",
        "",
        "Peak shortfall = the largest, over blocks, of negative equity of accounts still under "
        "water (marked to market) + bad debt recorded − insurance fund left, floored at 0: "
        "what the protocol could not pay, whether or not anybody liquidated the accounts. Peak "
        "unliquidated negative equity = the largest under-water equity nobody liquidated "
        "(before the insurance fund). Delay = blocks between an account becoming liquidatable (on "
        "the exchange's price) and its liquidation. Trader losses = deposits − withdrawals − "
        "final equity over traders' subaccounts. Gas burned by losing liquidators = fees of "
        "reverted liquidation attempts (lost races), in USD.",
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
    short: bool = False,
    argv: str = "",
) -> AmplifyResult:
    """Run the design (full factorial, or the short one) and write the experiment folder."""
    folder = ExperimentFolder(out)
    order = [cell_name(c) for c in cells(short)]
    batch, results = folder.execute(
        "amplify",
        scenario,
        plan(scenario, seeds, short),
        {
            "seeds": seeds,
            "design": "cells" if short else "full factorial",
            "full_factorial": not short,
            "cells": order,
            "modes": list(MODES),
            "power_target": {
                "metrics": list(TARGET.metrics),
                "share_of_baseline": TARGET.share,
                "alpha": TARGET.alpha,
                "power": TARGET.power,
            },
        },
        options,
    )
    for stale in ("effects.csv", "effects.parquet"):  # an earlier invocation's
        (folder.path / stale).unlink(missing_ok=True)
    summary = summarize_cells(results, order)
    effects = summarize_effects(results, short)
    check = baseline_delay_check(folder.path, results)
    gaps = power_gaps(effects)
    note = power_note(gaps, len(seeds))
    folder.table("results", results)
    folder.table("summary", summary)
    folder.table("effects", effects)
    plotting.amplify_factor_plot(
        summary, FACTOR_METRICS, order, folder.plots / "amplify.png", scenario.name
    )
    plotting.amplify_levels_plot(
        summary, AMPLIFY_METRICS, order, folder.plots / "amplify_figures.png", scenario.name
    )
    if not short:
        factorial_plot.effects_plot(
            effects, EFFECT_METRICS, folder.plots / "amplify_effects.png", scenario.name
        )
    folder.report(report_text(scenario, seeds, summary, effects, note, check, batch, argv, short))
    folder.finish(
        batch,
        baseline_min_delay_ok=check.ok if check.liquidations else None,
        power_powered=not gaps,
        power_note=note,
    )
    return AmplifyResult(folder.path, results, summary, effects, note, batch)
