"""Spillover: the positions a CROSS liquidation closes in markets that were not its cause.

A CROSS account holding positions in several markets is liquidated when its *total* equity
falls below its total maintenance requirement. The closes of positions that were themselves in
profit at the margin price (unrealized PnL >= 0) did not cause it: the losses came from another
market, and the forced selling (or buying) in this market is spillover. On the venue that flow
is absorbed by arbitrageurs, hedged on the external market (:mod:`sim.model.venue_flow`) and
moves the external price of a market that was not falling; :class:`~sim.scenario.pricepath.
ExternalMarket` keeps that part of the flow apart, so that a later liquidation can be asked
whether it happened only because of it (:mod:`sim.output.recorder`, ``after_spillover``).

The classification uses the account mirror *before* the liquidation's events are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sim.chain.events import Event
from sim.exchange.book import CROSS, AccountBook, AccountState, position_value

__all__ = ["CLOSE_EVENTS", "SpilloverClose", "in_profit", "spillover_closes"]

#: Events that close (part of) a position: name -> (size arg, quote arg, traded on the venue).
CLOSE_EVENTS = {
    "PositionLiquidated": ("sizeClosed", "quoteDelta", True),
    "BackstopTakeover": ("size", "quote", False),
    "PositionTakenOver": ("size", "quote", False),  # to a liquidator's subaccount (takeover)
}


@dataclass(frozen=True)
class SpilloverClose:
    """One close of a position a CROSS liquidation took in a market that was not its cause."""

    owner: str
    subaccount: int
    market: int
    size_base: int  # as the event gives it (a venue close: the trade's signed size)
    notional_units: int  # |quote| of the close, collateral units
    on_venue: bool  # traded on the venue (a backstop takeover is not)


def in_profit(account: AccountState, market: int, price_e8: int) -> bool:
    """Whether the account's position in ``market`` has unrealized PnL >= 0 at ``price_e8``."""
    pos = account.positions.get(market)
    if pos is None:
        return False
    return position_value(pos.size_base, price_e8) - pos.open_notional_units >= 0


def spillover_closes(
    book: AccountBook, events: Iterable[Event], prices_e8: Callable[[], Sequence[int]]
) -> list[SpilloverClose]:
    """The closes among ``events`` of positions in profit held by CROSS accounts with at least
    two positions (``prices_e8`` is called once, only if there is a close: the margin prices)."""
    closes = [e for e in events if e.name in CLOSE_EVENTS]
    if not closes:
        return []
    prices = prices_e8()
    out = []
    for ev in closes:
        a = ev.args
        acct = book.get(a["owner"], a["subaccount"])
        if acct is None or acct.mode != CROSS or len(acct.positions) < 2:
            continue
        m = a["market"]
        if not in_profit(acct, m, prices[m]):
            continue
        size_arg, quote_arg, on_venue = CLOSE_EVENTS[ev.name]
        out.append(
            SpilloverClose(a["owner"], a["subaccount"], m, a[size_arg], abs(a[quote_arg]), on_venue)
        )
    return out
