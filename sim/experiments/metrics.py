"""Key metrics of one run (numbers, not plots), read from its run folder (tables,
summary.json, scenario.toml) only.

``METRICS`` lists every metric an experiment can report, with its label and unit. Most come
straight from ``summary.json`` (:mod:`sim.output.summary`, its ``losses`` section gives the
shortfall marked to market and peak negative equity); two are computed here from the tables:

* ``negative_equity_usd``: latent bad debt, the negative equity of trader subaccounts still
  holding positions at the end of the run (accounts nobody liquidated, for instance because a
  liquidator earns nothing from an account that is already under water; the same number as
  ``summary.json``'s ``underwater_unliquidated``, restricted to traders).
* ``capital_needed_usd``: **capital needed for the same exposure**. For every trader, the
  smallest collateral that (1) meets the initial-margin requirement when the positions are
  opened and (2) keeps every subaccount at or above its maintenance requirement over the whole
  holding period, on the run's own margin-price path (oracle prices, or the venue mark if the
  scenario margins on the mark), with the exposure the trader drew (notional =
  collateral x leverage, spread evenly over its markets, sized at the price it saw when it
  entered; top-ups, stops and de-risking left out). With ``s_m`` the size, ``p_m(t)`` the price,
  ``e`` the entry price, ``im_m``/``mm_m`` the margin fractions::

      need_m(t)  = mm_m |s_m| p_m(t) - s_m (p_m(t) - e_m)          (maintenance minus PnL)
      CROSS:     C = max( sum_m im_m |s_m| e_m,  max_t sum_m need_m(t) )
      ISOLATED:  C = sum_m max( im_m |s_m| e_m,  max_t need_m(t) )

  Summed over traders. Both are computed for every run (``capital_needed_cross_usd``,
  ``capital_needed_isolated_usd``); ``capital_needed_usd`` is the one of the run's margin mode.
  Because ``max_t`` of a sum is at most the sum of the ``max_t``, ISOLATED never needs less on
  the same path: the gap is the capital that cross margin saves by netting gains in one market
  against losses in another. (The contract has no cross-market offsets in its requirements, so
  the initial-margin requirement alone is the same in both modes.)
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.scenario.schema import Scenario, scenario_from_mapping


@dataclass(frozen=True)
class Metric:
    """One key metric: its column name, its label and unit in reports, its number format."""

    name: str
    label: str
    unit: str
    fmt: str = "{:,.0f}"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("liquidations", "liquidations", "count", "{:,.1f}"),
        Metric("notional_usd", "notional liquidated", "USD"),
        Metric("positions_liquidated", "positions liquidated", "count", "{:,.1f}"),
        Metric("liquidated_accounts", "trader subaccounts liquidated", "count", "{:,.1f}"),
        Metric("delay_mean_blocks", "mean liquidation delay", "blocks", "{:,.2f}"),
        Metric("delay_max_blocks", "worst liquidation delay", "blocks", "{:,.1f}"),
        Metric("bad_debt_usd", "bad debt", "USD"),
        Metric("negative_equity_usd", "unliquidated negative equity", "USD"),
        Metric("negative_equity_peak_usd", "peak unliquidated negative equity", "USD"),
        Metric("shortfall_usd", "shortfall marked to market (end)", "USD"),
        Metric("shortfall_peak_usd", "peak shortfall marked to market", "USD"),
        Metric("insurance_drawdown_usd", "insurance-fund drawdown", "USD"),
        Metric("trader_losses_usd", "trader losses", "USD"),
        Metric("contagion_positions", "contagion positions", "count", "{:,.2f}"),
        Metric("contagion_notional_usd", "contagion notional", "USD"),
        Metric("spillover_notional_usd", "notional closed in markets not the cause", "USD"),
        Metric(
            "liquidations_after_spillover",
            "liquidations after spillover impact",
            "count",
            "{:,.2f}",
        ),
        Metric(
            "feedback_share_trough",
            "share of the fall at the trough from feedback",
            "fraction",
            "{:.3f}",
        ),
        Metric(
            "feedback_share_end", "share of the fall at the end from feedback", "fraction", "{:.3f}"
        ),
        Metric("peak_impact", "peak external impact", "fraction", "{:.3f}"),
        Metric("feedback_liquidations", "liquidations caused by feedback", "count", "{:,.2f}"),
        Metric("capital_needed_usd", "capital needed for the same exposure", "USD"),
        Metric("capital_needed_cross_usd", "capital needed if CROSS", "USD"),
        Metric("capital_needed_isolated_usd", "capital needed if ISOLATED", "USD"),
        Metric("trader_deposits_usd", "trader deposits (incl. top-ups)", "USD"),
        Metric("losing_liquidator_gas_usd", "gas burned by losing liquidators", "USD", "{:,.2f}"),
        Metric("liquidator_gas_usd", "gas paid by liquidators", "USD", "{:,.2f}"),
        Metric("failed_tx_share", "failed-transaction share", "fraction", "{:.3f}"),
        Metric("oracle_mean_age_s", "mean oracle age", "s", "{:,.1f}"),
        Metric("oracle_max_gap", "worst oracle gap vs external", "fraction", "{:.3f}"),
        Metric("base_fee_max_gwei", "peak base fee", "gwei", "{:,.1f}"),
        Metric("full_block_share", "share of full blocks", "fraction", "{:.3f}"),
        Metric("longest_full_streak_blocks", "longest run of full blocks", "blocks", "{:,.1f}"),
        Metric("rescues_waited", "rescues that waited 3+ blocks", "count", "{:,.2f}"),
        Metric("rescue_wait_mean_blocks", "mean rescue inclusion delay", "blocks", "{:,.2f}"),
        Metric("rescues_never_included", "rescues never included", "count", "{:,.2f}"),
        Metric(
            "liquidations_rescue_pending",
            "liquidations with the owner's rescue pending",
            "count",
            "{:,.2f}",
        ),
        Metric(
            "liquidations_rescue_priced_out",
            "liquidations with the owner's rescue priced out",
            "count",
            "{:,.2f}",
        ),
        Metric("oracle_reports_waited", "oracle reports that waited 3+ blocks", "count", "{:,.2f}"),
    ]
}


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def load_run_scenario(folder: Path) -> Scenario:
    return scenario_from_mapping(tomllib.loads((folder / "scenario.toml").read_text()))


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def capital_needed(
    traders: pd.DataFrame, blocks: pd.DataFrame, scenario: Scenario
) -> tuple[float, float]:
    """(CROSS, ISOLATED) capital needed for the traders' drawn exposure on this price path
    (see the module docstring)."""
    if traders is None or traders.empty or blocks.empty:
        return 0.0, 0.0
    column = "venue" if scenario.exchange.margin_price in ("mark", "venue") else "oracle"
    names = scenario.market_names
    prices = np.column_stack([blocks[f"{n}_{column}_usd"].to_numpy(dtype=float) for n in names])
    last = len(blocks) - 1
    im = np.array([m.initial_margin for m in scenario.markets])
    mm = np.array([m.maintenance_margin for m in scenario.markets])
    cross_total = isolated_total = 0.0
    for _, g in traders.groupby("owner", sort=True):
        entry = int(g["entry_block"].iloc[0])
        if entry > last:
            continue  # never traded
        end = min(entry + int(g["holding_blocks"].iloc[0]), last)
        ms = g["market_index"].to_numpy(dtype=int)
        e = prices[max(entry - 1, 0), ms]  # the price the trader saw when it sized its positions
        size = (
            g["direction"].to_numpy(dtype=float)
            * g["intended_notional_usd"].to_numpy(dtype=float)
            / e
        )
        p = prices[entry : end + 1][:, ms]
        need = mm[ms] * np.abs(size) * p - size * (p - e)  # (t, market)
        initial = im[ms] * np.abs(size) * e
        cross_total += max(float(initial.sum()), float(need.sum(axis=1).max()))
        isolated_total += float(np.maximum(initial, need.max(axis=0)).sum())
    return cross_total, isolated_total


def _loss_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Peak negative equity and the shortfall marked to market (runs written before these
    figures existed give NaN)."""
    losses = summary.get("losses") or {}
    neg = losses.get("unliquidated_negative_equity_usd") or {}
    short = losses.get("shortfall_usd") or {}
    return {
        "negative_equity_peak_usd": _num(neg.get("peak")),
        "shortfall_usd": _num(short.get("end")),
        "shortfall_peak_usd": _num(short.get("peak")),
    }


def _feedback_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The feedback and spillover figures (NaN for runs written before they existed)."""
    fb = summary.get("feedback") or {}
    c = summary.get("contagion") or {}
    return {
        "spillover_notional_usd": _num(c.get("spillover_notional_usd")),
        "liquidations_after_spillover": _num(c.get("liquidations_after_spillover")),
        "feedback_share_trough": _num(fb.get("feedback_share_at_trough")),
        "feedback_share_end": _num(fb.get("feedback_share_at_end")),
        "peak_impact": _num(fb.get("peak_impact")),
        "feedback_liquidations": _num(fb.get("liquidations_caused")),
    }


def _block_space_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Congestion and crowding-out figures (NaN for runs written before they existed)."""
    b = summary.get("block_space") or {}
    rescues = b.get("rescues") or {}
    reports = b.get("oracle_reports") or {}
    owner = summary["liquidations"].get("owner_rescue")
    owner = owner if owner is not None else {}
    has_owner = "owner_rescue" in summary["liquidations"]
    return {
        "full_block_share": _num(b.get("full_block_share")),
        "longest_full_streak_blocks": _num(b.get("longest_full_streak_blocks")),
        "rescues_waited": _num(rescues.get("waited_3_or_more_blocks")),
        "rescue_wait_mean_blocks": _num((rescues.get("inclusion_delay_blocks") or {}).get("mean")),
        "rescues_never_included": _num(rescues.get("never_included")),
        "liquidations_rescue_pending": float(owner.get("pending", 0)) if has_owner else math.nan,
        "liquidations_rescue_priced_out": float(owner.get("priced_out", 0))
        if has_owner
        else math.nan,
        "oracle_reports_waited": _num(reports.get("waited_3_or_more_blocks")),
    }


def run_metrics(folder: str | Path) -> dict[str, float]:
    """Every metric of ``METRICS`` for the run in ``folder``."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    scenario = load_run_scenario(folder)
    accounts = _read(folder, "accounts")
    blocks = _read(folder, "blocks")
    traders = _read(folder, "traders")
    trader_accounts = accounts[accounts["kind"] == "trader"] if accounts is not None else None
    neg = 0.0
    deposits = math.nan
    if trader_accounts is not None:
        under = trader_accounts[
            (trader_accounts["open_positions"] > 0) & (trader_accounts["equity_usd"] < 0)
        ]
        neg = -float(under["equity_usd"].sum()) if len(under) else 0.0
        deposits = float(trader_accounts["deposited_usd"].sum())
    if traders is not None and blocks is not None:
        cap_cross, cap_iso = capital_needed(traders, blocks, scenario)
    else:
        cap_cross = cap_iso = math.nan
    mode = scenario.run.margin_mode_override
    cap_mode = {"cross": cap_cross, "isolated": cap_iso}.get(mode, math.nan)
    oracle = summary.get("oracle") or {}
    ages = [_num(v.get("mean_age_s")) for v in oracle.values()]
    gaps = [_num(v.get("max_abs_gap_vs_external")) for v in oracle.values()]
    gas = summary.get("gas_by_kind") or {}
    delay = summary["liquidation_delay_blocks"]
    return {
        "liquidations": float(summary["liquidations"]["count"]),
        "notional_usd": _num(summary["liquidations"]["notional_usd"]),
        "positions_liquidated": float(summary["liquidations"]["positions"]),
        "liquidated_accounts": float(summary["traders"]["liquidated_accounts"]),
        "delay_mean_blocks": _num(delay["mean"]),
        "delay_max_blocks": _num(delay["max"]),
        "bad_debt_usd": _num(summary["bad_debt_usd"]),
        "negative_equity_usd": neg,
        **_loss_metrics(summary),
        "insurance_drawdown_usd": _num(summary["insurance_fund"]["max_drawdown_usd"]),
        "trader_losses_usd": _num(summary["traders"]["losses_usd"]),
        "contagion_positions": float(summary["contagion"]["positions"]),
        "contagion_notional_usd": _num(summary["contagion"]["notional_usd"]),
        **_feedback_metrics(summary),
        "capital_needed_usd": cap_mode,
        "capital_needed_cross_usd": cap_cross,
        "capital_needed_isolated_usd": cap_iso,
        "trader_deposits_usd": deposits,
        "losing_liquidator_gas_usd": _num(summary["losing_liquidators_gas_usd"]),
        "liquidator_gas_usd": _num(gas.get("liquidator", {}).get("fee_usd", 0.0)),
        "failed_tx_share": _num(summary["failed_transaction_share"]),
        "oracle_mean_age_s": float(np.nanmean(ages)) if ages else math.nan,
        "oracle_max_gap": float(np.nanmax(gaps)) if gaps else math.nan,
        "base_fee_max_gwei": _num(summary["base_fee_gwei"]["max"]),
        **_block_space_metrics(summary),
    }
