"""Arbitrageur: trades each venue toward the external price when the gap pays for gas, and hedges
on the external market. Its hedge is what carries a forced on-chain sell back into the external
price (``run.endogenous_impact``): a liquidation sells on the venue, the arbitrageur buys there
and sells the hedge externally, the external price falls, and the oracle follows it.

What is hedged: only the part of an arbitrage trade that absorbs other agents' net flow on the
venue since the last arbitrage (traders' trades and liquidations, kept by the model in
``venue_flow_base``). The rest of an arbitrage trade only re-pegs the virtual AMM to an external
move that already happened; on a real order book market makers re-quote without trading, so that
part moves no external price (hedging it would push the external price back against every
exogenous move, an artefact of the vAMM's inventory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.base import GWEI, ChainAgent

if TYPE_CHECKING:
    from sim.chain.events import Event
    from sim.chain.records import TxRecord
    from sim.model import LiqSimModel

GAS_USED_TRADE = 110_000  # typical gas of a trade on the contracts
OPPORTUNITY_BLOCKS = 5  # an arbitrage not mined within this many blocks is stale: it expires


class Arbitrageur(ChainAgent):
    """Keeps venue prices near the external price."""

    kind = "arbitrageur"
    subaccount = 0

    def __init__(self, model: LiqSimModel, address: str, offset: int):
        super().__init__(model, address)
        p = model.scenario.arbitrageurs
        self.min_gap = p.min_gap
        self.max_trade_units = int(p.max_trade_usd * 10**6)
        self.hedge = p.hedge
        self.latency_blocks = p.latency_blocks
        self.priority_wei = int(p.priority_fee_gwei * GWEI)
        self.offset = offset  # which market it looks at first (arbitrageurs spread out)
        self.trades = 0
        self.hedged_usd = 0.0

    def _external_e8(self, market: int) -> int:
        return self.model.external.price_e8(market, max(0, self.model.block - self.latency_blocks))

    def _opportunity(self, market: int) -> tuple[int, float] | None:
        """(base size, expected profit in USD) of moving the venue to the external price."""
        venue = self.model.view.venues[market]
        target = self._external_e8(market)
        if abs(venue.mark_e8 / target - 1) <= self.min_gap:
            return None
        size = venue.base_delta_to(target)
        cap = self.max_trade_units * 10**20 // target
        size = max(-cap, min(cap, size))
        if size == 0:
            return None
        quote = venue.quote(size)
        profit_units = size * target / 10**20 - quote  # value at the external price - cost
        return size, profit_units / 1e6

    def step(self) -> None:
        if self.in_flight:
            return
        n = self.model.view.n_markets
        for i in range(n):
            m = (self.offset + self.model.block + i) % n
            opp = self._opportunity(m)
            if opp is None or self.model.rival_bid_wei(f"arb:{m}", self.address) is not None:
                continue  # no gap, or a rival's arbitrage of this market is already pending
            size, profit_usd = opp
            if profit_usd <= self.model.gas_cost_usd(GAS_USED_TRADE, self.priority_wei):
                continue
            limit = self._external_e8(m)
            call = self.model.system.trade_call(self.address, self.subaccount, m, size, limit)
            if self.send(call, self.priority_wei, f"arb:{m}", expiry_blocks=OPPORTUNITY_BLOCKS):
                self.trades += 1
                return

    def on_included(self, record: TxRecord, events: list[Event]) -> None:
        if record.status != 1 or not self.hedge:
            return
        for ev in events:
            if ev.name == "Traded" and ev.args["owner"] == self.address:
                m, size, quote = ev.args["market"], ev.args["sizeDelta"], ev.args["quoteDelta"]
                absorbed = absorbed_flow(size, self.model.venue_flow_base[m])
                if absorbed == 0:
                    continue
                self.model.venue_flow_base[m] += absorbed
                notional_usd = quote * absorbed / size / 1e6  # + bought on the venue
                self.model.external.apply_trade(m, -notional_usd, self.model.block)
                self.hedged_usd += abs(notional_usd)


def absorbed_flow(trade_base: int, flow_base: int) -> int:
    """The part of an arbitrage trade that takes the other side of others' net venue flow."""
    if trade_base == 0 or flow_base == 0 or (trade_base > 0) == (flow_base > 0):
        return 0
    return trade_base if abs(trade_base) <= abs(flow_base) else -flow_base
