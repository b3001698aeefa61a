"""Arbitrageur: trades each venue toward the external price when the gap pays for gas, and hedges
on the external market. Its hedge is what carries a forced on-chain sell back into the external
price (``run.endogenous_impact``): a liquidation sells on the venue, the arbitrageur buys there
and sells the hedge externally, the external price falls, and the oracle follows it.

The arbitrageur reports each filled arbitrage as a :class:`~agents.intents.Hedge`; how much of it
moves the external price is the external market's rule (:mod:`sim.model.venue_flow`): only the
part that absorbs other agents' net flow on the venue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import Hedge, Send, Trade

if TYPE_CHECKING:
    from sim.model.observation import AgentView

GAS_USED_TRADE = 110_000  # typical gas of a trade on the contracts
OPPORTUNITY_BLOCKS = 5  # an arbitrage not mined within this many blocks is stale: it expires


@dataclass(frozen=True)
class ArbitrageurParams:
    """An arbitrageur's settings (``[arbitrageurs]`` in the scenario)."""

    min_gap: float  # relative venue/external gap below which it does nothing
    max_trade_units: int  # largest arbitrage, collateral units of notional
    hedge: bool
    latency_blocks: int
    priority_fee_wei: int
    offset: int  # which market it looks at first (arbitrageurs spread out)
    tip_from_fee_history: bool = False  # bid at least the wallet's suggested tip
    tip_percentile: float = 60.0


class Arbitrageur(ChainAgent):
    """Keeps venue prices near the external price."""

    kind = "arbitrageur"
    subaccount = 0

    def __init__(self, model, address: str, params: ArbitrageurParams):
        super().__init__(model, address)
        self.params = params
        self.trades = 0

    def _opportunity(self, view: AgentView, market: int) -> tuple[int, float] | None:
        """(base size, expected profit in USD) of moving the venue to the external price."""
        venue = view.chain.venues[market]
        target = view.external_price_e8(market, self.params.latency_blocks)
        if abs(venue.mark_e8 / target - 1) <= self.params.min_gap:
            return None
        size = venue.base_delta_to(target)
        cap = self.params.max_trade_units * 10**20 // target
        size = max(-cap, min(cap, size))
        if size == 0:
            return None
        quote = venue.quote(size)
        profit_units = size * target / 10**20 - quote  # value at the external price - cost
        return size, profit_units / 1e6

    def tip_wei(self, view: AgentView) -> int:
        """Its fixed tip, or at least the wallet's suggested tip for the current congestion."""
        p = self.params
        if not p.tip_from_fee_history:
            return p.priority_fee_wei
        return max(p.priority_fee_wei, view.fees.suggested_tip_wei(p.tip_percentile))

    def decide(self, view: AgentView) -> Decisions:
        if view.own_pending():
            return
        p = self.params
        n = view.chain.n_markets
        for i in range(n):
            m = (p.offset + view.step + i) % n
            opp = self._opportunity(view, m)
            if opp is None or view.mempool.rival_bid_wei(f"arb:{m}", self.address) is not None:
                continue  # no gap, or a rival's arbitrage of this market is already pending
            size, profit_usd = opp
            tip = self.tip_wei(view)
            if profit_usd <= view.fees.gas_cost_usd(GAS_USED_TRADE, tip):
                continue
            limit = view.external_price_e8(m, p.latency_blocks)
            trade = Trade(self.subaccount, m, size, limit)
            sent = yield Send(trade, tip, f"arb:{m}", OPPORTUNITY_BLOCKS)
            if sent is not None:
                self.trades += 1
                return

    def on_included(self, record, events) -> list[Hedge]:
        """Hedge each filled arbitrage on the external market."""
        if record.status != 1 or not self.params.hedge:
            return []
        return [
            Hedge(ev.args["market"], ev.args["sizeDelta"], ev.args["quoteDelta"])
            for ev in events
            if ev.name == "Traded" and ev.args["owner"] == self.address
        ]
