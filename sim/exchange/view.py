"""What agents see of the chain: its state as of the last mined block, kept from decoded events.

One :class:`ChainView` per model. After each block the model feeds it the block's events; agents
read oracle prices, venue reserves and accounts from it in the next step. It never talks to the
backend itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import isqrt

from sim.chain.events import Event
from sim.exchange.book import AccountBook, MarketRisk
from sim.exchange.mark import MarkBasis, mark_price_e8

INDEX, MARK, VENUE = 0, 1, 2  # IMarginExchange.PriceSource


@dataclass
class VenueState:
    """A virtual AMM's reserves (base 18 decimals, quote in token units)."""

    base_reserve: int
    quote_reserve: int

    @property
    def mark_e8(self) -> int:
        return self.quote_reserve * 10**20 // self.base_reserve

    def quote(self, base_delta: int) -> int:
        """``VirtualAmm.quoteSwap``: quote paid (+) or received (-) for ``base_delta``."""
        k = self.base_reserve * self.quote_reserve
        new_base = self.base_reserve - base_delta
        return -(-k // new_base) - self.quote_reserve

    def base_delta_to(self, price_e8: int) -> int:
        """Base to buy (+) or sell (-) so that the mark moves to ``price_e8`` (k held fixed)."""
        k = self.base_reserve * self.quote_reserve
        new_quote = isqrt(k * price_e8 // 10**20)
        return self.base_reserve - k // max(new_quote, 1)


@dataclass
class OracleState:
    """A feed's latest on-chain answer and when it was written."""

    price_e8: int
    updated_at_s: int
    round_id: int = 0


class ChainView:
    """Chain state as of the last block, for agents (read-only for them)."""

    def __init__(
        self,
        feeds: Sequence[str],
        venues: Sequence[str],
        exchange: str,
        risk: Sequence[MarketRisk],
        oracles: Sequence[OracleState],
        venue_states: Sequence[VenueState],
        insurance_units: int = 0,
        mark_basis: Sequence[MarkBasis] | None = None,
    ):
        self._feed_index = {a: i for i, a in enumerate(feeds)}
        self._venue_index = {a: i for i, a in enumerate(venues)}
        self.exchange = exchange
        self.book = AccountBook(risk, exchange, mark_basis)
        self.oracles = list(oracles)
        self.venues = list(venue_states)
        self.block_number = 0
        self.timestamp_s = 0
        self.next_base_fee_wei = 0
        self.insurance_units = insurance_units  # the exchange's insurance fund
        self.bad_debt_units = 0  # bad debt recorded since the view started

    @property
    def n_markets(self) -> int:
        return len(self.oracles)

    def oracle_prices_e8(self) -> list[int]:
        return [o.price_e8 for o in self.oracles]

    def margin_prices_e8(self) -> list[int]:
        """The prices the exchange checks margin at as of the last block (``marginPriceE8``): per
        market the oracle (index), the robust mark price (:mod:`sim.exchange.mark`) or the
        venue's raw price."""
        out = []
        for m, risk in enumerate(self.book.risk):
            index, venue = self.oracles[m].price_e8, self.venues[m].mark_e8
            if risk.margin_price == MARK:
                ema, h = self.book.mark_basis[m], risk.mark_half_life_s
                out.append(mark_price_e8(ema, index, venue, self.timestamp_s, h))
            else:
                out.append(venue if risk.margin_price == VENUE else index)
        return out

    def _track_funds(self, ev: Event) -> None:
        """The insurance fund and recorded bad debt, from the exchange's events."""
        a = ev.args
        if ev.name == "InsuranceDeposited":
            self.insurance_units = a["insuranceFund"]
        elif ev.name == "Liquidated":
            self.insurance_units += a["insuranceShare"] - a["insuranceCover"]
            self.bad_debt_units += a["badDebt"]
        elif ev.name in ("BackstopLiquidated", "AccountDeleveraged"):
            self.insurance_units -= a["insuranceCover"]
            self.bad_debt_units += a["badDebt"]

    def apply(self, events: Iterable[Event]) -> None:
        """Apply one block's decoded events in order."""
        exchange_events = []
        for ev in events:
            if ev.address == self.exchange:
                exchange_events.append(ev)
                self._track_funds(ev)
            elif ev.name == "AnswerUpdated" and ev.address in self._feed_index:
                o = self.oracles[self._feed_index[ev.address]]
                o.price_e8, o.updated_at_s, o.round_id = (
                    ev.args["current"],
                    ev.args["updatedAt"],
                    ev.args["roundId"],
                )
            elif ev.name == "Swap" and ev.address in self._venue_index:
                v = self.venues[self._venue_index[ev.address]]
                v.base_reserve, v.quote_reserve = ev.args["baseReserve"], ev.args["quoteReserve"]
        self.book.apply(exchange_events)
