"""Liquidator: a profit-seeking bot.

It follows accounts from the exchange's events (the model's :class:`sim.exchange.view.ChainView`), spots
the ones below maintenance after its reaction latency, confirms them with one batch ``healthOf``
call per block, and sends a liquidation when the expected reward beats the expected gas cost.
It bids priority fees against rival liquidations of the same account it sees in the mempool (a
priority gas auction: outbid by ``bid_increment`` up to ``bid_cap_gwei`` and never past break-even),
and a liquidation that a rival wins first reverts on chain and still costs its gas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.base import GWEI, ChainAgent

if TYPE_CHECKING:
    from sim.exchange.book import AccountState
    from sim.model import LiqSimModel

GAS_USED_BASE = 120_000  # typical gas of a one-position liquidation (measured on the contracts)
GAS_USED_PER_EXTRA_MARKET = 70_000


def liquidation_label(owner: str, subaccount: int) -> str:
    return f"liquidate:{owner}/{subaccount}"


class Liquidator(ChainAgent):
    """A liquidation bot with a latency, a gas budget and a bidding strategy."""

    kind = "liquidator"

    def __init__(self, model: LiqSimModel, address: str, latency_blocks: int):
        super().__init__(model, address)
        p = model.scenario.liquidators
        self.latency_blocks = latency_blocks
        self.min_profit_usd = p.min_profit_usd
        self.opening_bid_wei = int(p.priority_fee_gwei * GWEI)
        self.bid_increment = p.bid_increment
        self.bid_cap_wei = int(p.bid_cap_gwei * GWEI)
        self.sent = 0
        self.won = 0
        self.lost = 0
        self.skipped_unprofitable = 0
        self._ceiling_wei: dict[str, int] = {}  # highest priority fee worth paying, per label

    def step(self) -> None:
        self._defend_pending_bids()
        block = self.model.block
        mine = self.pending_labels()
        candidates = [
            a
            for a in self.model.liquidatable
            if block - a.first_liquidatable_block > self.latency_blocks
            and liquidation_label(a.owner, a.subaccount) not in mine
        ]
        if not candidates:
            return
        confirmed = self.model.confirm_liquidatable(candidates)  # one healthOf call
        for acct, equity_units in confirmed:
            self._try_liquidate(acct, equity_units)

    # ---------------------------------------------------------------- economics

    def _gas_used(self, acct: AccountState) -> int:
        return GAS_USED_BASE + GAS_USED_PER_EXTRA_MARKET * (len(acct.positions) - 1)

    def _reward_usd(self, acct: AccountState, equity_units: int) -> float:
        """Liquidator's share of the penalty, paid from what equity is left (oracle prices)."""
        prices = self.model.view.margin_prices_e8()
        risk = self.model.view.book.risk
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

    def _break_even_priority_wei(self, reward_usd: float, gas_used: int) -> int:
        """Highest priority fee at which the liquidation still earns ``min_profit_usd``."""
        eth_usd = self.model.gas_token_price_usd()
        budget_wei = (reward_usd - self.min_profit_usd) / eth_usd * 1e18
        return int(budget_wei / gas_used) - self.model.next_base_fee_wei()

    def _try_liquidate(self, acct: AccountState, equity_units: int) -> None:
        label = liquidation_label(acct.owner, acct.subaccount)
        gas_used = self._gas_used(acct)
        ceiling = min(
            self.bid_cap_wei,
            self._break_even_priority_wei(self._reward_usd(acct, equity_units), gas_used),
        )
        rival = self.model.rival_bid_wei(label, self.address)
        bid = (
            self.opening_bid_wei
            if rival is None
            else max(self.opening_bid_wei, int(rival * (1 + self.bid_increment)) + 1)
        )
        if self.model.gas_free:
            bid, ceiling = 0, 0
        if bid > ceiling:
            self.skipped_unprofitable += 1
            return
        self._ceiling_wei[label] = ceiling
        call = self.model.system.liquidate_call(
            self.address, acct.owner, acct.subaccount, len(acct.positions)
        )
        if self.send(call, bid, label) is not None:
            self.sent += 1

    def _defend_pending_bids(self) -> None:
        """Priority gas auction: outbid a rival that overtook one of our pending liquidations,
        and raise the bid of one left waiting for a block (by ``bid_increment``), never past the
        bid cap or the liquidation's break-even."""
        if self.model.gas_free:
            return
        for tx_hash, flight in list(self.in_flight.items()):
            rival = self.model.rival_bid_wei(flight.label, self.address)
            ours = flight.signed.max_priority_fee_per_gas_wei
            if rival is not None and rival >= ours:
                new_bid = int(rival * (1 + self.bid_increment)) + 1
            elif self.model.block > flight.submitted_step:
                new_bid = int(ours * (1 + self.bid_increment)) + 1
            else:
                continue
            new_bid = max(new_bid, ours * 111 // 100 + 1)  # the mempool's replacement bump
            if new_bid <= min(
                self.bid_cap_wei, self._ceiling_wei.get(flight.label, self.bid_cap_wei)
            ):
                self.bump(tx_hash, new_bid)

    def on_included(self, record, events) -> None:
        if not record.label.startswith("liquidate:"):
            return
        if record.status == 1:
            self.won += 1
        else:
            self.lost += 1
