"""Liquidator: a profit-seeking bot.

It follows accounts from the exchange's events (the account mirror in its view), spots the ones
below maintenance after its reaction latency, confirms them with one batch ``healthOf`` read per
block, and sends a liquidation when the expected reward beats the expected gas cost. It bids
priority fees against rival liquidations of the same account it sees in the mempool (a priority
gas auction: outbid by ``bid_increment`` up to the bid cap and never past break-even), and a
liquidation that a rival wins first reverts on chain and still costs its gas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import Liquidate, Replace, Send

if TYPE_CHECKING:
    from sim.exchange.book import AccountState
    from sim.model.observation import AgentView

GAS_USED_BASE = 120_000  # typical gas of a one-position liquidation (measured on the contracts)
GAS_USED_PER_EXTRA_MARKET = 70_000


def liquidation_label(owner: str, subaccount: int) -> str:
    return f"liquidate:{owner}/{subaccount}"


@dataclass(frozen=True)
class LiquidatorParams:
    """A liquidator's settings (``[liquidators]`` in the scenario, latency drawn per bot)."""

    latency_blocks: int
    min_profit_usd: float
    opening_bid_wei: int
    bid_increment: float  # fraction by which it outbids a rival or raises a waiting bid
    bid_cap_wei: int


class Liquidator(ChainAgent):
    """A liquidation bot with a latency, a gas budget and a bidding strategy."""

    kind = "liquidator"

    def __init__(self, model, address: str, params: LiquidatorParams):
        super().__init__(model, address)
        self.params = params
        self.sent = 0
        self.won = 0
        self.lost = 0
        self.skipped_unprofitable = 0
        self._ceiling_wei: dict[str, int] = {}  # highest priority fee worth paying, per label

    def decide(self, view: AgentView) -> Decisions:
        yield from self._defend_pending_bids(view)
        mine = {p.label for p in view.own_pending()}
        candidates = [
            a
            for a in view.liquidatable
            if view.step - a.first_liquidatable_block > self.params.latency_blocks
            and liquidation_label(a.owner, a.subaccount) not in mine
        ]
        if not candidates:
            return
        for acct, equity_units in view.health_of(candidates):  # one healthOf read
            yield from self._try_liquidate(view, acct, equity_units)

    # ---------------------------------------------------------------- economics

    @staticmethod
    def gas_used(acct: AccountState) -> int:
        return GAS_USED_BASE + GAS_USED_PER_EXTRA_MARKET * (len(acct.positions) - 1)

    @staticmethod
    def reward_usd(view: AgentView, acct: AccountState, equity_units: int) -> float:
        """Liquidator's share of the penalty, paid from what equity is left (margin prices)."""
        prices = view.chain.margin_prices_e8()
        risk = view.chain.book.risk
        penalty = share = 0.0
        for m, pos in acct.positions.items():
            notional = abs(pos.size_base) * prices[m] / 10**20
            pen = notional * risk[m].liquidation_penalty_ppm / 1e6
            penalty += pen
            share += pen * risk[m].liquidator_share_ppm / 1e6
        if penalty <= 0:
            return 0.0
        paid = min(penalty, max(equity_units, 0))
        return share * paid / penalty / 1e6

    def _break_even_priority_wei(self, view: AgentView, reward_usd: float, gas_used: int) -> int:
        """Highest priority fee at which the liquidation still earns ``min_profit_usd``."""
        eth_usd = view.fees.gas_token_price_usd()
        budget_wei = (reward_usd - self.params.min_profit_usd) / eth_usd * 1e18
        return int(budget_wei / gas_used) - view.fees.next_base_fee_wei

    def _try_liquidate(self, view: AgentView, acct: AccountState, equity_units: int) -> Decisions:
        p = self.params
        label = liquidation_label(acct.owner, acct.subaccount)
        gas_used = self.gas_used(acct)
        reward = self.reward_usd(view, acct, equity_units)
        ceiling = min(p.bid_cap_wei, self._break_even_priority_wei(view, reward, gas_used))
        rival = view.mempool.rival_bid_wei(label, self.address)
        bid = (
            p.opening_bid_wei
            if rival is None
            else max(p.opening_bid_wei, int(rival * (1 + p.bid_increment)) + 1)
        )
        if view.fees.gas_free:
            bid, ceiling = 0, 0
        if bid > ceiling:
            self.skipped_unprofitable += 1
            return
        self._ceiling_wei[label] = ceiling
        action = Liquidate(acct.owner, acct.subaccount, len(acct.positions))
        if (yield Send(action, bid, label)) is not None:
            self.sent += 1

    def _defend_pending_bids(self, view: AgentView) -> Decisions:
        """Priority gas auction: outbid a rival that overtook one of our pending liquidations,
        and raise the bid of one left waiting for a block (by ``bid_increment``), never past the
        bid cap or the liquidation's break-even."""
        if view.fees.gas_free:
            return
        p = self.params
        for pending in view.own_pending():
            rival = view.mempool.rival_bid_wei(pending.label, self.address)
            ours = pending.priority_fee_wei
            if rival is not None and rival >= ours:
                new_bid = int(rival * (1 + p.bid_increment)) + 1
            elif view.step > pending.submitted_step:
                new_bid = int(ours * (1 + p.bid_increment)) + 1
            else:
                continue
            new_bid = max(new_bid, pending.min_replacement_priority_fee_wei)
            if new_bid <= min(p.bid_cap_wei, self._ceiling_wei.get(pending.label, p.bid_cap_wei)):
                yield Replace(pending.tx_id, new_bid)

    def on_included(self, record, events):
        if record.label.startswith("liquidate:"):
            if record.status == 1:
                self.won += 1
            else:
                self.lost += 1
        return ()
