"""Records a run as tables: per-block series (Mesa DataCollector), every transaction, every
dropped transaction, every liquidation. Tables are plain rows here; :mod:`sim.output.runfolder`
writes them as Parquet and :mod:`sim.output.summary` reduces them to key figures."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mesa import DataCollector

from sim.chain.events import Event
from sim.exchange.book import (
    CROSS,
    AccountBook,
    AccountState,
    contagion_markets,
    equity_of,
    position_notional,
)
from sim.market.builder import SKIP_FEE_CAP, SKIP_NO_SPACE
from sim.output.block_space import RESCUE_LABELS
from sim.output.contagion import CLOSE_EVENTS, spillover_closes
from sim.units import BASE, GWEI, USD

if TYPE_CHECKING:
    from sim.chain.records import TxRecord
    from sim.market.builder import BlockResult
    from sim.model import LiqSimModel


class Recorder:
    """Collects the tables of one run as it goes."""

    def __init__(self, model: LiqSimModel):
        self.model = model
        self.market_names = list(model.scenario.market_names)
        self.transactions: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.liquidations: list[dict[str, Any]] = []
        self.adl_fills: list[dict[str, Any]] = []
        self.current: dict[str, Any] = {}
        self._waiting: dict[str, str] = {}
        self._block_liquidations = 0
        self._block_backstops = 0
        self._block_deleveragings = 0
        self._block_notional = 0.0
        self.datacollector = DataCollector(
            model_reporters={k: self._reporter(k) for k in self._columns()}
        )

    # ---------------------------------------------------------------- columns

    def _columns(self) -> list[str]:
        cols = ["block", "chain_block", "timestamp_s"]
        for n in self.market_names:
            cols += [f"{n}_external_usd", f"{n}_oracle_usd", f"{n}_venue_usd", f"{n}_margin_usd"]
            cols += [f"{n}_oracle_age_s"]
            cols += [f"{n}_impact", f"{n}_spillover_impact"]
        cols += [
            "base_fee_gwei",
            "gas_used",
            "background_gas_used",
            "background_gas_demanded",
            "block_fill",
            "background_stress",
            "clearing_tip_gwei",
            "mean_gas_price_gwei",
            "suggested_tip_gwei",
            "txs",
            "failed_txs",
            "dropped_txs",
            "backlog",
            "priced_out_txs",
            "mean_priority_fee_gwei",
            "max_priority_fee_gwei",
            "liquidations",
            "backstops",
            "deleveragings",
            "liquidated_notional_usd",
            "liquidatable_accounts",
            "open_interest_usd",
            "insurance_fund_usd",
            "bad_debt_usd",
            "underwater_accounts",
            "negative_equity_usd",
            "negative_equity_external_usd",
            "shortfall_usd",
            "shortfall_external_usd",
        ]
        return cols

    @staticmethod
    def _reporter(key: str):
        return lambda model: model.recorder.current[key]

    # ----------------------------------------------------------------- events

    def begin_block(self, result: BlockResult) -> None:
        """Note why the builder left each stuck sender's transaction out of this block."""
        self._waiting = dict(result.waiting)

    def rescue_status(self, owner: str) -> str:
        """What became of the owner's rescue (top-up, de-risking, stop-loss) when its account was
        liquidated: ``pending`` (in the mempool), ``priced_out`` (in the mempool but left out of
        the last block for its fee: below the base fee, or outbid for the space) or ``none``."""
        wallet = self.model.wallets.get(owner)
        if wallet is None:
            return "none"
        rescues = [
            "0x" + f.signed.tx_hash.hex()
            for f in wallet.in_flight.values()
            if f.label in RESCUE_LABELS
        ]
        if not rescues:
            return "none"
        if any(self._waiting.get(h) in PRICED_OUT for h in rescues):
            return "priced_out"
        return "pending"

    def before_tx(self, rec: TxRecord, events: list[Event]) -> None:
        """Record one mined transaction; called before its events reach the view."""
        self.transactions.append(asdict(rec))
        closes = [e for e in events if e.name in CLOSE_EVENTS]
        fills = [e for e in events if e.name == "Deleveraged"]
        taken = any(e.name == "PositionTakenOver" for e in events)
        for ev in events:
            if ev.name == "Liquidated":  # closed on the venue, or taken over by the liquidator
                self._record_liquidation(rec, ev, closes, "takeover" if taken else "liquidation")
                self._block_liquidations += 1
            elif ev.name == "BackstopLiquidated":
                self._record_liquidation(rec, ev, closes, "backstop")
                self._block_backstops += 1
            elif ev.name == "AccountDeleveraged":
                self._record_liquidation(rec, ev, closes + fills, "deleverage")
                self._block_deleveragings += 1
        for ev in fills:
            self._record_adl_fill(rec, ev)

    def _record_adl_fill(self, rec: TxRecord, ev: Event) -> None:
        a = ev.args
        cp = self.model.by_address.get(a["counterpartyOwner"])
        self.adl_fills.append(
            {
                "block": self.model.block,
                "chain_block": rec.block_number,
                "tx_hash": rec.tx_hash,
                "market": self.market_names[a["market"]],
                "owner": a["owner"],
                "subaccount": a["subaccount"],
                "counterparty_owner": a["counterpartyOwner"],
                "counterparty_subaccount": a["counterpartySubaccount"],
                "counterparty_kind": cp.kind if cp is not None else "other",
                "size": a["size"] / BASE,
                "quote_usd": a["quote"] / USD,
                "price_usd": abs(a["quote"]) / USD / (abs(a["size"]) / BASE) if a["size"] else 0.0,
            }
        )

    def _record_liquidation(self, rec: TxRecord, ev: Event, closes: list[Event], kind: str) -> None:
        """One row per step of the waterfall that closed (part of) an account: a liquidation
        (full or partial), a backstop takeover or an auto-deleveraging."""
        view = self.model.view
        a = ev.args
        acct = view.book.get(a["owner"], a["subaccount"])
        prices = view.margin_prices_e8()
        contagion = contagion_markets(acct, prices, view.book.risk) if acct is not None else []
        contagion_units = sum(
            position_notional(acct.positions[m].size_base, prices[m]) for m in contagion
        )
        health = view.book.health(acct, prices) if acct is not None else None
        first = acct.first_liquidatable_block if acct is not None else None
        block = self.model.block
        mine_events = [
            e
            for e in closes
            if e.args["owner"] == a["owner"] and e.args["subaccount"] == a["subaccount"]
        ]
        mine = [e.args for e in mine_events]
        markets = sorted({c["market"] for c in mine})
        notional = _closed_notional(kind, a, mine)
        spill = spillover_closes(view.book, mine_events, lambda: prices)
        caused = self._caused_by(acct, prices)
        self.liquidations.append(
            {
                "block": block,
                "chain_block": rec.block_number,
                "tx_hash": rec.tx_hash,
                "tx_index": rec.index_in_block,
                "liquidator": a["liquidator"] if "liquidator" in a else a["caller"],
                "owner": a["owner"],
                "subaccount": a["subaccount"],
                "mode": ("cross" if acct.mode == CROSS else "isolated") if acct is not None else "",
                "markets": ",".join(self.market_names[m] for m in markets),
                "positions": len(markets),
                "notional_usd": notional / USD,
                "penalty_usd": a.get("penaltyPaid", 0) / USD,
                "liquidator_reward_usd": a.get("liquidatorReward", 0) / USD,
                "insurance_share_usd": a.get("insuranceShare", 0) / USD,
                "insurance_cover_usd": a["insuranceCover"] / USD,
                "bad_debt_usd": a["badDebt"] / USD,
                "equity_before_usd": health.equity_units / USD if health else float("nan"),
                "became_liquidatable_block": first if first is not None else block,
                "delay_blocks": block - first if first is not None else 0,
                "contagion_positions": len(contagion),
                "contagion_notional_usd": contagion_units / USD,
                "gas_used": rec.gas_used,
                "priority_fee_gwei": rec.priority_fee_per_gas_wei / GWEI,
                "kind": kind,
                "partial": bool(a.get("isPartial", False)),
                "rescue": self.rescue_status(a["owner"]),
                "spillover_markets": ",".join(
                    self.market_names[m] for m in sorted({c.market for c in spill})
                ),
                "spillover_notional_usd": sum(c.notional_units for c in spill) / USD,
                **caused,
            }
        )
        self._block_notional += notional / USD

    def _caused_by(self, acct: AccountState | None, prices: list[int]) -> dict[str, bool]:
        """Whether the account, liquidatable at the margin prices, would not have been with the
        external impact taken out of them (``feedback_caused``: at exogenous prices alone; and
        ``feedback_only``: nor at any later block's exogenous prices, as it stands), or with
        only the spillover part of it taken out (``after_spillover``)."""
        none = {"feedback_caused": False, "feedback_only": False, "after_spillover": False}
        if acct is None or not acct.positions:
            return none
        ext, b, book = self.model.external, self.model.block, self.model.view.book
        if not book.health(acct, prices).liquidatable:
            return none
        impact = [ext.impact(m, b) for m in range(len(prices))]
        rest = [ext.impact_without_spillover(m, b) for m in range(len(prices))]
        exogenous = [round(p / (1 + i)) for p, i in zip(prices, impact, strict=True)]
        unspilled = [
            round(p * (1 + r) / (1 + i)) for p, i, r in zip(prices, impact, rest, strict=True)
        ]
        caused = not book.health(acct, exogenous).liquidatable
        return {
            "feedback_caused": caused,
            "feedback_only": caused and not _liquidatable_later(acct, book, ext.exogenous[b:]),
            "after_spillover": not book.health(acct, unspilled).liquidatable,
        }

    def after_block(self, result: BlockResult, events: list[Event]) -> None:
        """Record the block's row (through the Mesa DataCollector) and its dropped txs."""
        model, view = self.model, self.model.view
        for d in result.dropped:
            self.dropped.append(asdict(d))
        prios = [r.priority_fee_per_gas_wei / GWEI for r in result.records]
        prices = view.margin_prices_e8()
        external = [model.external.price_e8(i, model.block) for i in range(view.n_markets)]
        held = view.book.with_positions()
        oi = sum(
            position_notional(p.size_base, prices[m]) for a in held for m, p in a.positions.items()
        )
        losses = marked_losses(held, prices, external, view.bad_debt_units, view.insurance_units)
        row: dict[str, Any] = {
            "block": model.block,
            "chain_block": result.block.number,
            "timestamp_s": result.block.timestamp,
        }
        for i, n in enumerate(self.market_names):
            row[f"{n}_external_usd"] = model.external.price(i, model.block)
            row[f"{n}_oracle_usd"] = view.oracles[i].price_e8 / 1e8
            row[f"{n}_venue_usd"] = view.venues[i].mark_e8 / 1e8
            row[f"{n}_margin_usd"] = prices[i] / 1e8
            row[f"{n}_oracle_age_s"] = result.block.timestamp - view.oracles[i].updated_at_s
            impact = model.external.impact(i, model.block)
            row[f"{n}_impact"] = impact
            row[f"{n}_spillover_impact"] = (1 + impact) / (
                1 + model.external.impact_without_spillover(i, model.block)
            ) - 1
        row.update(
            base_fee_gwei=result.base_fee_wei / GWEI,
            gas_used=result.gas_used,
            background_gas_used=result.background_gas_used,
            background_gas_demanded=result.background_gas_demanded,
            block_fill=(result.gas_used + result.background_gas_used) / result.block.head.gas_limit,
            background_stress=model.background.stress,
            clearing_tip_gwei=min((t for t, g in result.included_tips if g > 0), default=0) / GWEI,
            mean_gas_price_gwei=mean_gas_price_wei(result) / GWEI,
            suggested_tip_gwei=model.fee_history.suggest_tip_wei() / GWEI,
            txs=len(result.records),
            failed_txs=sum(1 for r in result.records if r.status == 0),
            dropped_txs=len(result.dropped),
            backlog=result.backlog,
            priced_out_txs=sum(1 for _, why in result.waiting if why in PRICED_OUT),
            mean_priority_fee_gwei=sum(prios) / len(prios) if prios else 0.0,
            max_priority_fee_gwei=max(prios) if prios else 0.0,
            liquidations=self._block_liquidations,
            backstops=self._block_backstops,
            deleveragings=self._block_deleveragings,
            liquidated_notional_usd=self._block_notional,
            liquidatable_accounts=len(model.liquidatable),
            open_interest_usd=oi / USD,
            insurance_fund_usd=view.insurance_units / USD,
            bad_debt_usd=view.bad_debt_units / USD,
            **losses,
        )
        self.current = row
        self.datacollector.collect(model)
        self._block_liquidations = self._block_backstops = self._block_deleveragings = 0
        self._block_notional = 0.0

    # ----------------------------------------------------------------- tables

    def tables(self) -> dict[str, pd.DataFrame]:
        """The run's tables as DataFrames (stable column order, even when empty)."""
        blocks = self.datacollector.get_model_vars_dataframe().reset_index(drop=True)
        return {
            "blocks": blocks,
            "transactions": _frame(self.transactions, TX_COLUMNS),
            "dropped": _frame(self.dropped, DROPPED_COLUMNS),
            "liquidations": _frame(self.liquidations, LIQUIDATION_COLUMNS),
            "adl": _frame(self.adl_fills, ADL_COLUMNS),
            "accounts": self._accounts(),
            "traders": trader_table(self.model),
            "liquidators": liquidator_table(self.model),
            "exogenous": exogenous_table(self.model),
        }

    def _accounts(self) -> pd.DataFrame:
        """Every subaccount at the end of the run, valued at the final oracle prices."""
        view, model = self.model.view, self.model
        prices = view.margin_prices_e8()
        rows = []
        for (owner, sub), a in sorted(view.book.accounts.items()):
            agent = model.by_address.get(owner)
            h = view.book.health(a, prices)
            rows.append(
                {
                    "owner": owner,
                    "subaccount": sub,
                    "kind": agent.kind if agent is not None else "other",
                    "mode": "cross" if a.mode == CROSS else "isolated",
                    "deposited_usd": a.deposited_units / USD,
                    "withdrawn_usd": a.withdrawn_units / USD,
                    "collateral_usd": a.collateral_units / USD,
                    "equity_usd": h.equity_units / USD,
                    "open_positions": len(a.positions),
                    "liquidations": a.liquidations,
                    "net_loss_usd": (a.deposited_units - a.withdrawn_units - h.equity_units) / USD,
                }
            )
        return _frame(rows, ACCOUNT_COLUMNS)


def _liquidatable_later(acct: AccountState, book: AccountBook, exogenous: np.ndarray) -> bool:
    """Whether the account, its positions and collateral as they are, becomes liquidatable at
    the exogenous prices of any block from now to the end of the run (analysis, in floats)."""
    markets = sorted(acct.positions)
    size = np.array([acct.positions[m].size_base / BASE for m in markets])
    basis = sum(acct.positions[m].open_notional_units for m in markets) / USD
    mm = np.array([book.risk[m].maintenance_margin_ppm / 1e6 for m in markets])
    p = exogenous[:, markets]
    equity = acct.collateral_units / USD + p @ size - basis
    return bool(np.any(equity < (np.abs(size) * p) @ mm))


PRICED_OUT = frozenset({SKIP_FEE_CAP, SKIP_NO_SPACE})


def mean_gas_price_wei(result: BlockResult) -> float:
    """Gas-weighted mean price per gas of everything the block carried (ours and the
    background's): base fee + tip, as a block explorer's mean gas price."""
    gas = sum(g for _, g in result.included_tips)
    if gas <= 0:
        return float(result.base_fee_wei)
    return result.base_fee_wei + sum(t * g for t, g in result.included_tips) / gas


def _closed_notional(kind: str, a: dict[str, Any], closes: list[dict[str, Any]]) -> int:
    """Notional an event closed, in collateral units: the liquidation's own figure, the sum of
    the positions a backstop took over (at the margin price), or what ADL closed against
    counterparties plus what it closed on the venue."""
    if kind in ("liquidation", "takeover"):
        return a["notionalClosed"]
    if kind == "backstop":
        return sum(abs(c["quote"]) for c in closes)
    return a["sizeDeleveragedNotional"] + a["notionalOnVenue"]


def marked_losses(
    held: list[AccountState],
    margin_prices_e8: list[int],
    external_prices_e8: list[int],
    bad_debt_units: int,
    insurance_units: int,
) -> dict[str, float]:
    """The protocol's losses marked to market at the end of a block.

    Negative equity of every account still holding positions (nobody has liquidated it yet:
    losses that exist whether or not anyone liquidates), valued at the exchange's margin prices
    and at the external prices; the shortfall is that negative equity plus the bad debt already
    recorded, less the insurance fund still available, floored at zero (what the protocol could
    not pay if every underwater account were closed at those prices now)."""
    negative = negative_ext = 0
    underwater = 0
    for a in held:
        eq = equity_of(a, margin_prices_e8)
        if eq < 0:
            negative -= eq
            underwater += 1
        eq_ext = equity_of(a, external_prices_e8)
        if eq_ext < 0:
            negative_ext -= eq_ext
    return {
        "underwater_accounts": underwater,
        "negative_equity_usd": negative / USD,
        "negative_equity_external_usd": negative_ext / USD,
        "shortfall_usd": max(0, negative + bad_debt_units - insurance_units) / USD,
        "shortfall_external_usd": max(0, negative_ext + bad_debt_units - insurance_units) / USD,
    }


LIQUIDATOR_COLUMNS = [
    "liquidator",
    "mode",
    "latency_blocks",
    "capital_usd",
    "sent",
    "won",
    "lost",
    "skipped_unprofitable",
    "skipped_no_capital",
    "takeovers",
    "margin_short",
    "unwinds",
    "unwound_usd",
    "hedged_usd",
    "hedge_closed_usd",
    "inventory_usd",
    "peak_inventory_usd",
]


def liquidator_table(model: LiqSimModel) -> pd.DataFrame:
    """Every liquidator's decisions at the end of the run (``Liquidator.stats``): liquidations
    sent, won and lost, skipped for profit or (takeover mode) capital, takeovers, unwinds, its
    external hedge of what it took over and what it traded back, and its inventory (end and
    peak, at margin prices)."""
    rows = [a.stats() for a in model.agents if getattr(a, "kind", "") == "liquidator"]
    return pd.DataFrame(rows, columns=LIQUIDATOR_COLUMNS)


def trader_table(model: LiqSimModel) -> pd.DataFrame:
    """Every trader's drawn exposure, one row per trader and market (inputs of the run)."""
    names = model.scenario.market_names
    rows = []
    for agent in model.traders:
        p = agent.profile
        k = len(p.markets)
        for m, d in zip(p.markets, p.directions, strict=True):
            rows.append(
                {
                    "owner": agent.address,
                    "mode": agent.mode,
                    "drawn_mode": p.mode,
                    "market": names[m],
                    "market_index": m,
                    "direction": d,
                    "markets_held": k,
                    "leverage": p.leverage,
                    "collateral_usd": p.collateral_units / 1e6,
                    "intended_notional_usd": p.collateral_units / 1e6 * p.leverage / k,
                    "entry_block": p.entry_block,
                    "holding_blocks": p.holding_blocks,
                    "stop_loss": p.stop_loss,
                }
            )
    cols = [
        "owner",
        "mode",
        "drawn_mode",
        "market",
        "market_index",
        "direction",
        "markets_held",
        "leverage",
        "collateral_usd",
        "intended_notional_usd",
        "entry_block",
        "holding_blocks",
        "stop_loss",
    ]
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["owner", "market_index"], kind="stable")
        .reset_index(drop=True)
    )


def exogenous_table(model: LiqSimModel) -> pd.DataFrame:
    """The exogenous inputs per block: each market's exogenous price and external 1% depth."""
    exo, depth = model.external.exogenous, model.external.depth
    data = {"block": range(exo.shape[0])}
    for i, n in enumerate(model.scenario.market_names):
        data[f"{n}_exogenous_usd"] = exo[:, i]
        data[f"{n}_external_depth_usd"] = depth[:, i]
    return pd.DataFrame(data)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


TX_COLUMNS = [
    "tx_hash",
    "block_number",
    "index_in_block",
    "sender",
    "sender_kind",
    "label",
    "nonce",
    "gas_limit",
    "gas_used",
    "base_fee_wei",
    "effective_gas_price_wei",
    "priority_fee_per_gas_wei",
    "fee_paid_wei",
    "status",
    "revert_reason",
    "revert_detail",
    "failure",
    "submitted_block",
    "inclusion_delay_blocks",
]
DROPPED_COLUMNS = [
    "tx_hash",
    "sender",
    "sender_kind",
    "label",
    "nonce",
    "gas_limit",
    "max_fee_per_gas_wei",
    "max_priority_fee_per_gas_wei",
    "submitted_block",
    "dropped_block",
    "reason",
]
LIQUIDATION_COLUMNS = [
    "block",
    "chain_block",
    "tx_hash",
    "tx_index",
    "liquidator",
    "owner",
    "subaccount",
    "mode",
    "markets",
    "positions",
    "notional_usd",
    "penalty_usd",
    "liquidator_reward_usd",
    "insurance_share_usd",
    "insurance_cover_usd",
    "bad_debt_usd",
    "equity_before_usd",
    "became_liquidatable_block",
    "delay_blocks",
    "contagion_positions",
    "contagion_notional_usd",
    "gas_used",
    "priority_fee_gwei",
    "kind",
    "partial",
    "rescue",
    "spillover_markets",
    "spillover_notional_usd",
    "feedback_caused",
    "feedback_only",
    "after_spillover",
]
ADL_COLUMNS = [
    "block",
    "chain_block",
    "tx_hash",
    "market",
    "owner",
    "subaccount",
    "counterparty_owner",
    "counterparty_subaccount",
    "counterparty_kind",
    "size",
    "quote_usd",
    "price_usd",
]
ACCOUNT_COLUMNS = [
    "owner",
    "subaccount",
    "kind",
    "mode",
    "deposited_usd",
    "withdrawn_usd",
    "collateral_usd",
    "equity_usd",
    "open_positions",
    "liquidations",
    "net_loss_usd",
]
