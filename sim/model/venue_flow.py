"""Others' net flow on each venue, and how much of an arbitrageur's hedge moves the external
price (``run.endogenous_impact``).

What is hedged: only the part of an arbitrage trade that absorbs other agents' net flow on the
venue since the last arbitrage (traders' trades and liquidation closes). The rest of an
arbitrage trade only re-pegs the virtual AMM to an external move that already happened; on a
real order book market makers re-quote without trading, so that part moves no external price
(hedging it would push the external price back against every exogenous move, an artefact of the
vAMM's inventory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agents.intents import Hedge
from sim.chain.events import Event
from sim.scenario.pricepath import ExternalMarket
from sim.units import USD


def absorbed_flow(trade_base: int, flow_base: int) -> int:
    """The part of an arbitrage trade that takes the other side of others' net venue flow."""
    if trade_base == 0 or flow_base == 0 or (trade_base > 0) == (flow_base > 0):
        return 0
    return trade_base if abs(trade_base) <= abs(flow_base) else -flow_base


class VenueFlow:
    """Net base flow per venue not yet absorbed by arbitrage."""

    def __init__(self, n_markets: int, is_arbitrageur: Callable[[str], bool]):
        self.base = [0] * n_markets
        self._is_arbitrageur = is_arbitrageur
        self.hedged_usd = 0.0

    def track(self, events: Iterable[Event]) -> None:
        """Accumulate non-arbitrage trades and liquidation closes executed on the venues."""
        for ev in events:
            if ev.name == "Traded" and not self._is_arbitrageur(ev.args["owner"]):
                self.base[ev.args["market"]] += ev.args["sizeDelta"]
            elif ev.name == "PositionLiquidated":
                self.base[ev.args["market"]] += ev.args["sizeClosed"]

    def hedge(self, hedge: Hedge, external: ExternalMarket, block: int) -> float:
        """Apply an arbitrageur's hedge: the absorbed part is sold (bought) on the external
        market at ``block``. Returns the notional traded there, in USD (+ bought on the venue)."""
        m = hedge.market
        absorbed = absorbed_flow(hedge.size_base, self.base[m])
        if absorbed == 0:
            return 0.0
        self.base[m] += absorbed
        notional_usd = hedge.quote_units * absorbed / hedge.size_base / USD
        external.apply_trade(m, -notional_usd, block)
        self.hedged_usd += abs(notional_usd)
        return notional_usd
