"""Others' net flow on each venue, and how much of an arbitrageur's hedge moves the external
price (``run.endogenous_impact``).

What is hedged: only the part of an arbitrage trade that absorbs other agents' net flow on the
venue since the last arbitrage (traders' trades and liquidation closes). The rest of an
arbitrage trade only re-pegs the virtual AMM to an external move that already happened; on a
real order book market makers re-quote without trading, so that part moves no external price
(hedging it would push the external price back against every exogenous move, an artefact of the
vAMM's inventory).

Forced flow: the part of that net flow that comes from liquidation closes is tracked beside it
(at most the net flow, and of its sign: other flow nets against it first), and so is the
spillover part of the forced flow (:mod:`sim.output.contagion`: CROSS liquidations closing
positions in profit). A hedge carries the forced and spillover shares of the flow it absorbed
to the external market: forced flow stands for the represented book's liquidations there (it
is scaled up), traders' own trades only for themselves, and the spillover impact is kept apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agents.intents import Hedge
from sim.chain.events import Event
from sim.output.contagion import SpilloverClose
from sim.scenario.pricepath import ExternalMarket
from sim.units import USD


def absorbed_flow(trade_base: int, flow_base: int) -> int:
    """The part of an arbitrage trade that takes the other side of others' net venue flow."""
    if trade_base == 0 or flow_base == 0 or (trade_base > 0) == (flow_base > 0):
        return 0
    return trade_base if abs(trade_base) <= abs(flow_base) else -flow_base


def within(part: int, whole: int) -> int:
    """``part`` limited to ``whole``: 0 unless of the same sign, and at most its size."""
    if part == 0 or whole == 0 or (part > 0) != (whole > 0):
        return 0
    return part if abs(part) <= abs(whole) else whole


def share_of(absorbed: int, part: int, whole: int) -> int:
    """``part``'s proportional share of ``absorbed`` (base units absorbed out of ``whole``)."""
    return absorbed * part // whole if part and whole else 0


class VenueFlow:
    """Net base flow per venue not yet absorbed by arbitrage; its forced and spillover parts."""

    def __init__(self, n_markets: int, is_arbitrageur: Callable[[str], bool]):
        self.base = [0] * n_markets
        self.forced = [0] * n_markets
        self.spill = [0] * n_markets
        self._is_arbitrageur = is_arbitrageur
        self.hedged_usd = 0.0
        self.forced_hedged_usd = 0.0
        self.spillover_hedged_usd = 0.0

    def track(self, events: Iterable[Event], spillover: Iterable[SpilloverClose] = ()) -> None:
        """Accumulate non-arbitrage trades and liquidation closes executed on the venues, and
        the venue closes among ``spillover`` (the same transaction's)."""
        for ev in events:
            if ev.name == "Traded" and not self._is_arbitrageur(ev.args["owner"]):
                self.base[ev.args["market"]] += ev.args["sizeDelta"]
            elif ev.name == "PositionLiquidated":
                self.base[ev.args["market"]] += ev.args["sizeClosed"]
                self.forced[ev.args["market"]] += ev.args["sizeClosed"]
        for close in spillover:
            if close.on_venue:
                self.spill[close.market] += close.size_base
        self._limit()

    def _limit(self) -> None:
        self.forced = [within(f, b) for f, b in zip(self.forced, self.base, strict=True)]
        self.spill = [within(s, f) for s, f in zip(self.spill, self.forced, strict=True)]

    def hedge(self, hedge: Hedge, external: ExternalMarket, block: int) -> float:
        """Apply an arbitrageur's hedge: the absorbed part is sold (bought) on the external
        market at ``block``, with the forced and spillover shares of the net flow it absorbed.
        Returns the notional traded there, in USD (+ bought on the venue)."""
        m = hedge.market
        absorbed = absorbed_flow(hedge.size_base, self.base[m])
        if absorbed == 0:
            return 0.0
        forced = share_of(absorbed, self.forced[m], self.base[m])
        spill = share_of(absorbed, self.spill[m], self.base[m])
        self.base[m] += absorbed
        self.forced[m] += forced
        self.spill[m] += spill
        self._limit()
        notional_usd = hedge.quote_units * absorbed / hedge.size_base / USD
        forced_usd = notional_usd * forced / absorbed
        spill_usd = notional_usd * spill / absorbed
        external.apply_trade(
            m, -notional_usd, block, forced_usd=-forced_usd, spillover_usd=-spill_usd
        )
        self.hedged_usd += abs(notional_usd)
        self.forced_hedged_usd += abs(forced_usd)
        self.spillover_hedged_usd += abs(spill_usd)
        return notional_usd
