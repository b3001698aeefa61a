"""Key figures of a run, computed from its tables only (never from live model objects), so the
same function summarizes a run folder written anywhere."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.output.block_space import block_space
from sim.output.jsonable import json_float as _f


def gas_by_kind(
    transactions: pd.DataFrame, blocks: pd.DataFrame, gas_token_usd: pd.Series | None
) -> dict[str, dict]:
    """Gas paid per kind of sender, in ETH and USD (at the gas token's price in that block)."""
    out: dict[str, dict] = {}
    if transactions.empty:
        return out
    tx = transactions.copy()
    tx["fee_eth"] = tx["fee_paid_wei"].astype(float) / 1e18
    if gas_token_usd is not None:
        price = dict(zip(blocks["chain_block"], gas_token_usd, strict=True))
        tx["fee_usd"] = tx["fee_eth"] * tx["block_number"].map(price).astype(float)
    else:
        tx["fee_usd"] = np.nan
    for kind, g in tx.groupby("sender_kind", sort=True):
        out[str(kind)] = {
            "transactions": len(g),
            "failed": int((g["status"] == 0).sum()),
            "gas_used": int(g["gas_used"].sum()),
            "fee_eth": _f(g["fee_eth"].sum()),
            "fee_usd": _f(g["fee_usd"].sum()),
        }
    return out


def summarize(tables: dict[str, pd.DataFrame], facts: dict[str, Any]) -> dict[str, Any]:
    """The key figures of DESIGN.md from a run's tables.

    ``facts`` carries what the tables do not: ``market_names``, ``initial_insurance_usd``,
    ``gas_token_market`` (or None) and optionally ``accounts`` (the final accounts table).
    """
    blocks, tx, liq = tables["blocks"], tables["transactions"], tables["liquidations"]
    accounts = tables.get("accounts", pd.DataFrame())
    names = facts["market_names"]
    token = facts.get("gas_token_market")
    gas_usd = blocks[f"{token}_external_usd"] if token else None

    delays = liq["delay_blocks"] if not liq.empty else pd.Series(dtype=float)
    insurance = (
        blocks["insurance_fund_usd"]
        if not blocks.empty
        else pd.Series([facts["initial_insurance_usd"]])
    )
    traders = accounts[accounts["kind"] == "trader"] if not accounts.empty else accounts
    oracle = {}
    for n in names:
        if blocks.empty:
            continue
        gap = (blocks[f"{n}_oracle_usd"] / blocks[f"{n}_external_usd"] - 1).abs()
        oracle[n] = {
            "mean_age_s": _f(blocks[f"{n}_oracle_age_s"].mean()),
            "max_age_s": _f(blocks[f"{n}_oracle_age_s"].max()),
            "mean_abs_gap_vs_external": _f(gap.mean()),
            "max_abs_gap_vs_external": _f(gap.max()),
        }
    liquidator_tx = tx[tx["sender_kind"] == "liquidator"] if not tx.empty else tx
    lost = liquidator_tx[liquidator_tx["status"] == 0] if not liquidator_tx.empty else liquidator_tx
    gas = gas_by_kind(tx, blocks, gas_usd)
    lost_usd = 0.0
    if not lost.empty and gas_usd is not None:
        price = dict(zip(blocks["chain_block"], gas_usd, strict=True))
        lost_usd = float(
            (lost["fee_paid_wei"].astype(float) / 1e18 * lost["block_number"].map(price)).sum()
        )
    return {
        "blocks": len(blocks),
        "transactions": len(tx),
        "liquidations": {
            "count": len(liq),
            "notional_usd": _f(liq["notional_usd"].sum()) if not liq.empty else 0.0,
            "positions": int(liq["positions"].sum()) if not liq.empty else 0,
            "by_mode": {str(k): int(v) for k, v in liq["mode"].value_counts().sort_index().items()}
            if not liq.empty
            else {},
            "owner_rescue": {
                str(k): int(v) for k, v in liq["rescue"].value_counts().sort_index().items()
            }
            if "rescue" in liq and not liq.empty
            else {},
        },
        "liquidation_delay_blocks": {
            "mean": _f(delays.mean()) if len(delays) else None,
            "p90": _f(delays.quantile(0.9)) if len(delays) else None,
            "max": _f(delays.max()) if len(delays) else None,
        },
        "bad_debt_usd": _f(liq["bad_debt_usd"].sum()) if not liq.empty else 0.0,
        "underwater_unliquidated": _underwater(accounts),
        "losses": losses(blocks, liq, facts["initial_insurance_usd"]),
        "block_space": block_space(blocks, tx, tables.get("dropped", pd.DataFrame())),
        "waterfall": waterfall(liq, tables.get("adl", pd.DataFrame())),
        "insurance_fund": {
            "initial_usd": _f(facts["initial_insurance_usd"]),
            "final_usd": _f(insurance.iloc[-1]),
            "max_drawdown_usd": _f(facts["initial_insurance_usd"] - insurance.min()),
            "cover_paid_usd": _f(liq["insurance_cover_usd"].sum()) if not liq.empty else 0.0,
        },
        "traders": {
            "count": len(traders),
            "losses_usd": _f(traders["net_loss_usd"].sum()) if not traders.empty else None,
            "liquidated_accounts": int((traders["liquidations"] > 0).sum())
            if not traders.empty
            else 0,
        },
        "contagion": {
            "positions": int(liq["contagion_positions"].sum()) if not liq.empty else 0,
            "notional_usd": _f(liq["contagion_notional_usd"].sum()) if not liq.empty else 0.0,
            **spillover(liq),
        },
        "feedback": feedback(blocks, tables.get("exogenous"), liq, names),
        "oracle": oracle,
        "gas_by_kind": gas,
        "failed_transaction_share": _f((tx["status"] == 0).mean()) if not tx.empty else None,
        "losing_liquidators_gas_usd": _f(lost_usd),
        "base_fee_gwei": {
            "mean": _f(blocks["base_fee_gwei"].mean()) if not blocks.empty else None,
            "max": _f(blocks["base_fee_gwei"].max()) if not blocks.empty else None,
        },
    }


def _peak_end(series: pd.Series) -> dict[str, float | None]:
    if series.empty:
        return {"peak": 0.0, "end": 0.0}
    return {"peak": _f(series.max()), "end": _f(series.iloc[-1])}


def losses(blocks: pd.DataFrame, liq: pd.DataFrame, initial_insurance_usd: float) -> dict:
    """Losses where they happen, from the per-block series: realized bad debt; negative equity
    of accounts nobody has liquidated yet (peak over the run and at the end, at the margin and
    at the external prices); the insurance fund's drawdown; and the shortfall marked to market
    (negative equity + bad debt - insurance available, floored at 0)."""
    insurance = blocks["insurance_fund_usd"] if not blocks.empty else pd.Series(dtype=float)
    empty = pd.Series(dtype=float)

    def col(name: str) -> pd.Series:
        return blocks.get(name, empty)

    return {
        "bad_debt_usd": _f(liq["bad_debt_usd"].sum()) if not liq.empty else 0.0,
        "unliquidated_negative_equity_usd": _peak_end(col("negative_equity_usd")),
        "unliquidated_negative_equity_external_usd": _peak_end(col("negative_equity_external_usd")),
        "underwater_accounts": _peak_end(col("underwater_accounts")),
        "insurance_drawdown_usd": _f(initial_insurance_usd - insurance.min())
        if not insurance.empty
        else 0.0,
        "shortfall_usd": _peak_end(col("shortfall_usd")),
        "shortfall_external_usd": _peak_end(col("shortfall_external_usd")),
    }


def waterfall(liq: pd.DataFrame, adl: pd.DataFrame) -> dict[str, Any]:
    """How far down the liquidation waterfall the run went: liquidations in full and partial,
    backstop takeovers, auto-deleveraging (events, fills, notional and who bore it)."""
    kind = liq["kind"] if "kind" in liq else pd.Series("liquidation", index=liq.index)
    partial = liq["partial"] if "partial" in liq else pd.Series(False, index=liq.index)

    def step(rows: pd.DataFrame) -> dict[str, Any]:
        return {
            "count": len(rows),
            "notional_usd": _f(rows["notional_usd"].sum()) if len(rows) else 0.0,
            "insurance_cover_usd": _f(rows["insurance_cover_usd"].sum()) if len(rows) else 0.0,
            "bad_debt_usd": _f(rows["bad_debt_usd"].sum()) if len(rows) else 0.0,
        }

    private = liq[kind == "liquidation"]
    by_kind: dict[str, float | None] = {}
    if not adl.empty:
        bore = adl.assign(notional=adl["quote_usd"].abs())
        for k, g in bore.groupby("counterparty_kind", sort=True):
            by_kind[str(k)] = _f(g["notional"].sum())
    return {
        "liquidations_full": step(private[~partial[private.index].astype(bool)]),
        "liquidations_partial": step(private[partial[private.index].astype(bool)]),
        "takeovers": step(liq[kind == "takeover"]),  # liquidators.mode = "takeover"
        "backstops": step(liq[kind == "backstop"]),
        "deleveragings": step(liq[kind == "deleverage"]),
        "adl_fills": len(adl),
        "adl_counterparty_accounts": int(
            adl[["counterparty_owner", "counterparty_subaccount"]].drop_duplicates().shape[0]
        )
        if not adl.empty
        else 0,
        "adl_notional_by_counterparty_kind_usd": by_kind,
    }


def _underwater(accounts: pd.DataFrame) -> dict[str, Any]:
    """Accounts still holding positions with negative equity at the end: bad debt in waiting
    that no liquidator found worth taking (the reward comes out of equity that is gone)."""
    if accounts.empty:
        return {"accounts": 0, "negative_equity_usd": 0.0}
    under = accounts[(accounts["open_positions"] > 0) & (accounts["equity_usd"] < 0)]
    negative = float(-under["equity_usd"].sum()) if len(under) else 0.0
    return {"accounts": len(under), "negative_equity_usd": _f(negative)}


def _share(fall: float, exogenous_fall: float) -> float | None:
    """Part of a fall not in the exogenous path: (fall - exogenous fall) / fall (None when the
    price did not fall; above 1 when the exogenous path rose)."""
    return _f((fall - exogenous_fall) / fall) if fall > 0 else None


def _market_feedback(actual: np.ndarray, exo: np.ndarray, depth: np.ndarray | None) -> dict:
    p0 = exo[0]
    impact = actual / exo - 1
    trough, end = int(np.argmin(actual)), len(actual) - 1
    out: dict[str, Any] = {}
    for name, b in (("trough", trough), ("end", end)):
        fall, exo_fall = 1 - actual[b] / p0, 1 - exo[b] / p0
        out[name] = {
            "block": b,
            "fall": _f(fall),
            "exogenous_fall": _f(exo_fall),
            "feedback_share": _share(fall, exo_fall),
        }
    peak = int(np.argmin(impact))
    out["peak_impact"] = _f(impact[peak])
    out["peak_impact_block"] = peak
    if depth is not None:
        out["min_depth_fraction"] = _f(depth.min() / depth[0])
    return out


def feedback(
    blocks: pd.DataFrame, exogenous: pd.DataFrame | None, liq: pd.DataFrame, names: list[str]
) -> dict[str, Any] | None:
    """How much of each market's fall forced selling caused rather than the exogenous path: per
    market at the trough of the external price and at the end, ``feedback_share = (fall -
    exogenous fall) / fall`` (falls from the block-0 price), the peak impact (the lowest
    external / exogenous - 1) and the thinnest external depth; their means over the markets
    that fell; and the liquidations the impact caused (accounts not liquidatable at that block's
    exogenous prices alone), of which ``feedback_only``: not at any later block's either, as
    they stood. None without the exogenous table (older run folders)."""
    if exogenous is None or exogenous.empty or blocks.empty:
        return None
    n = len(blocks)
    markets = {}
    for m in names:
        depth_col = f"{m}_external_depth_usd"
        markets[m] = _market_feedback(
            blocks[f"{m}_external_usd"].to_numpy(dtype=float),
            exogenous[f"{m}_exogenous_usd"].to_numpy(dtype=float)[:n],
            exogenous[depth_col].to_numpy(dtype=float)[:n] if depth_col in exogenous else None,
        )

    def mean_share(at: str) -> float | None:
        shares = [v[at]["feedback_share"] for v in markets.values()]
        shares = [x for x in shares if x is not None]
        return _f(np.mean(shares)) if shares else None

    caused = liq[liq["feedback_caused"].astype(bool)] if "feedback_caused" in liq else liq.iloc[:0]
    only = (
        caused[caused["feedback_only"].astype(bool)]
        if "feedback_only" in caused
        else caused.iloc[:0]
    )
    return {
        "feedback_share_at_trough": mean_share("trough"),
        "feedback_share_at_end": mean_share("end"),
        "peak_impact": _f(min(v["peak_impact"] for v in markets.values())) if markets else None,
        "liquidations_caused": len(caused),
        "notional_caused_usd": _f(caused["notional_usd"].sum()) if len(caused) else 0.0,
        "liquidations_feedback_only": len(only),
        "markets": markets,
    }


def spillover(liq: pd.DataFrame) -> dict[str, Any]:
    """Spillover of CROSS liquidations: the notional they closed in markets that were not their
    cause (positions in profit at the margin price) and the liquidations that followed the
    external impact of that flow (accounts not liquidatable with it taken out of the prices)."""
    if "spillover_notional_usd" not in liq or liq.empty:
        return {
            "spillover_notional_usd": 0.0,
            "spillover_liquidations": 0,
            "liquidations_after_spillover": 0,
            "notional_after_spillover_usd": 0.0,
        }
    after = liq[liq["after_spillover"].astype(bool)]
    return {
        "spillover_notional_usd": _f(liq["spillover_notional_usd"].sum()),
        "spillover_liquidations": int((liq["spillover_notional_usd"] > 0).sum()),
        "liquidations_after_spillover": len(after),
        "notional_after_spillover_usd": _f(after["notional_usd"].sum()) if len(after) else 0.0,
    }
