"""The contract driver of ``liqsim stress``: a book opened on freshly deployed contracts, moved,
and liquidated.

For every move (and for "no move") a fresh chain is deployed (:class:`StressChain`), the book is
opened exactly as given (at each position's entry price, then the markets are set to the current
prices), the moved markets' oracle **and** venue are set to ``current x (1 + move)`` (the venue
by a large external account's trade, as an arbitrageur would), and every liquidatable subaccount
is liquidated (most under water first) by a liquidator account. Reported per move and
subaccount: equity before liquidation, maintenance requirement, whether it was liquidated,
penalty, bad debt, and equity left. Per position: the contract's ``liquidationPriceE8`` view
(other prices held), and the move of the stressed markets at which its subaccount becomes
liquidatable (solved from the contract's health: ``E0 + A x = MM0 + B x``).

:func:`run_stress` does this for the book as given and in the other margin mode
(:func:`sim.stress.positions.other_mode`) and writes the results (:mod:`sim.stress.report`).

All amounts on the chain boundary are integers in the contracts' units (collateral 6 decimals,
sizes 18 decimals, prices 8 decimals); floats only in the tables.
"""

from __future__ import annotations

import math
from decimal import Decimal
from math import isqrt
from pathlib import Path
from typing import Any

from sim.chain.events import EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.client import TxFailed, deploy_system
from sim.exchange.from_scenario import system_config
from sim.scenario.loader import ConfigError
from sim.stress.positions import (
    Position,
    PositionsBook,
    PositionsError,
    StressInput,
    load_positions,
    other_mode,
)
from sim.stress.report import StressResult, tabulate, write_results
from sim.units import BASE, NOTIONAL_SCALE, PPM, PRICE_SCALE, USD

__all__ = ["StressChain", "drive", "run_stress"]

DEPLOYER, REPORTER, TRADER, WHALE, LIQUIDATOR = 0, 1, 2, 3, 4


class StressChain:
    """A fresh deployment of the scenario's markets with the book opened on it."""

    def __init__(self, inp: StressInput, book: PositionsBook):
        self.inp, self.book = inp, book
        self.scenario = inp.scenario
        self.names = list(self.scenario.market_names)
        self.session = ChainSession(
            seed=0, n_accounts=5, block_time_s=self.scenario.run.block_time_s
        )
        current = [self._e8(inp.prices[n]) for n in self.names]
        self.system = deploy_system(self.session, system_config(self.scenario, current))
        self.decoder = EventDecoder()
        self.trader = self.session.accounts[TRADER].address
        self.whale = self.session.accounts[WHALE].address
        self.liquidator = self.session.accounts[LIQUIDATOR].address
        self.current_e8 = dict(zip(self.names, current, strict=True))
        depth = sum(int(m.venue_depth_usd * USD) for m in self.scenario.markets)
        s = self.system
        s.send_batch(
            s.fund_trader_calls(self.whale, 4 * depth)
            + s.open_account_calls(self.whale, 0, "cross", 0, 4 * depth)
        )
        self._open()

    @staticmethod
    def _e8(price_usd: float) -> int:
        return round(Decimal(str(price_usd)) * PRICE_SCALE)

    def market(self, name: str) -> int:
        return self.names.index(name)

    def _venue_delta(self, m: int, price_e8: int) -> int:
        v = self.system.venues[m].functions
        base, quote = v.baseReserve().call(), v.quoteReserve().call()
        k = base * quote
        new_quote = isqrt(k * price_e8 // NOTIONAL_SCALE)
        return base - k // new_quote

    def set_prices(self, prices_e8: dict[str, int]) -> None:
        """Write each market's oracle price and trade its venue to it (all in one block)."""
        s = self.system
        calls = []
        for name, p in prices_e8.items():
            m = self.market(name)
            calls.append(s.report_call(m, p))
            delta = self._venue_delta(m, p)
            if delta != 0:
                calls.append(s.trade_call(self.whale, 0, m, delta))
        s.send_batch(calls)

    def _size(self, p: Position, price_e8: int) -> int:
        if p.size is not None:
            size = int(p.size * BASE)
        else:
            size = int(p.notional_usd * USD * NOTIONAL_SCALE / price_e8)  # type: ignore[operator]
        if size == 0:
            raise PositionsError(
                "positions", f"a {p.market} position rounds to size 0", source=str(self.inp.path)
            )
        return p.side * size

    def _open(self) -> None:
        s = self.system
        total = sum(int(a.collateral_usd * USD) for a in self.book.accounts)
        calls = s.fund_trader_calls(self.trader, total)
        for i, a in enumerate(self.book.accounts):
            market = self.market(a.positions[0].market) if a.mode == "isolated" else 0
            calls += s.open_account_calls(
                self.trader, i, a.mode, market, int(a.collateral_usd * USD)
            )
        s.send_batch(calls)
        self.sizes: dict[tuple[int, str], int] = {}
        for i, a in enumerate(self.book.accounts):
            for p in a.positions:
                price = (
                    self._e8(p.entry_price_usd)
                    if p.entry_price_usd is not None
                    else self.current_e8[p.market]
                )
                if s.exchange.functions.indexPriceE8(self.market(p.market)).call() != price:
                    self.set_prices({p.market: price})
                size = self._size(p, price)
                try:
                    s.send(s.trade_call(self.trader, i, self.market(p.market), size))
                except TxFailed as err:
                    raise PositionsError(
                        f"accounts.{i}",
                        f"cannot open {p.market} {'long' if size > 0 else 'short'} in the "
                        f"{self.book.name} book ({a.mode}, {a.collateral_usd:,} USD): {err.reason}",
                        source=str(self.inp.path),
                    ) from None
                self.sizes[(i, p.market)] = size
        self.set_prices(dict(self.current_e8))

    # -- reading --------------------------------------------------------------------------------

    def health(self, i: int) -> dict[str, Any]:
        return self.system.health(self.trader, i)

    def position_rows(self) -> list[dict[str, Any]]:
        """Per position: contract figures at the current prices and the liquidation move."""
        ex = self.system.exchange.functions
        rows = []
        for i, a in enumerate(self.book.accounts):
            h = self.health(i)
            # E(x) = E0 + A x and MM(x) = MM0 + B x when every market of the account moves by x
            a_units = b_units = 0.0
            for p in a.positions:
                m = self.market(p.market)
                size = ex.getPosition(self.trader, i, m).call()[0]
                price = ex.marginPriceE8(m).call()
                mm_ppm = self.system.config.markets[m].maintenance_margin_ppm
                a_units += size * price / NOTIONAL_SCALE
                b_units += abs(size) * price / NOTIONAL_SCALE * mm_ppm / PPM
            x_all = (
                (h["maintenance_requirement"] - h["equity"]) / (a_units - b_units)
                if a_units != b_units
                else math.inf
            )
            for p in a.positions:
                m = self.market(p.market)
                pos = ex.getPosition(self.trader, i, m).call()
                p0 = ex.marginPriceE8(m).call()
                mm_ppm = self.system.config.markets[m].maintenance_margin_ppm
                liq = ex.liquidationPriceE8(self.trader, i, m).call()
                size = pos[0]
                denom = size / NOTIONAL_SCALE * p0 * (1 - (1 if size > 0 else -1) * mm_ppm / PPM)
                x_one = (h["maintenance_requirement"] - h["equity"]) / denom if denom else math.inf
                rows.append(
                    {
                        "book": self.book.name,
                        "book_mode": self.book.mode,
                        "subaccount": i,
                        "account_name": a.name,
                        "mode": a.mode,
                        "market": p.market,
                        "side": "long" if size > 0 else "short",
                        "size": size / BASE,
                        "size_base": size,
                        "entry_cost_usd": pos[1] / USD,
                        "price_usd": p0 / PRICE_SCALE,
                        "notional_usd": abs(size) * p0 / NOTIONAL_SCALE / USD,
                        "collateral_usd": float(a.collateral_usd),
                        "equity_usd": h["equity"] / USD,
                        "maintenance_usd": h["maintenance_requirement"] / USD,
                        "liquidation_price_usd": liq / PRICE_SCALE,
                        "liquidation_move_this_market": x_one,
                        "liquidation_move_all_markets": x_all,
                        "p0_e8": p0,
                        "equity_units": h["equity"],
                        "maintenance_units": h["maintenance_requirement"],
                        "maintenance_margin_ppm": mm_ppm,
                        "liquidation_price_e8": liq,
                    }
                )
        return rows

    def stress(self, move: float, markets: list[str]) -> list[dict[str, Any]]:
        """Apply ``move`` to ``markets`` (oracle and venue), liquidate what is liquidatable."""
        target = {
            n: (round(self.current_e8[n] * (1 + move)) if n in markets else self.current_e8[n])
            for n in self.names
        }
        self.set_prices(target)
        before = {i: self.health(i) for i in range(len(self.book.accounts))}
        order = sorted(
            (i for i, h in before.items() if h["liquidatable"]),
            key=lambda i: before[i]["equity"] / max(before[i]["maintenance_requirement"], 1),
        )
        liquidations: dict[int, dict[str, Any]] = {}
        for rank, i in enumerate(order, start=1):
            n_pos = len(self.book.accounts[i].positions)
            mined = self.system.try_send(
                self.system.liquidate_call(self.liquidator, self.trader, i, n_pos)
            )
            ev = next(
                (e for e in self.decoder.decode_all(mined.logs) if e.name == "Liquidated"), None
            )
            liquidations[i] = {
                "rank": rank,
                "status": mined.status,
                "event": ev.args if ev is not None else {},
            }
        rows = []
        for i, a in enumerate(self.book.accounts):
            h0 = before[i]
            liq = liquidations.get(i)
            ev = liq["event"] if liq else {}
            done = bool(liq and liq["status"] == 1)
            after = (
                self.system.exchange.functions.getAccount(self.trader, i).call()[3]
                if done
                else h0["equity"]
            )
            rows.append(
                {
                    "book": self.book.name,
                    "book_mode": self.book.mode,
                    "move": move,
                    "moved_markets": ",".join(markets),
                    "subaccount": i,
                    "account_name": a.name,
                    "mode": a.mode,
                    "markets": ",".join(p.market for p in a.positions),
                    "equity_before_usd": h0["equity"] / USD,
                    "maintenance_usd": h0["maintenance_requirement"] / USD,
                    "health": h0["equity"] / h0["maintenance_requirement"]
                    if h0["maintenance_requirement"]
                    else math.inf,
                    "liquidatable": bool(h0["liquidatable"]),
                    "liquidated": done,
                    "liquidation_order": liq["rank"] if liq else 0,
                    "notional_closed_usd": ev.get("notionalClosed", 0) / USD,
                    "penalty_usd": ev.get("penaltyPaid", 0) / USD,
                    "bad_debt_usd": ev.get("badDebt", 0) / USD,
                    "insurance_cover_usd": ev.get("insuranceCover", 0) / USD,
                    "equity_after_usd": after / USD,
                }
            )
        return rows


# ------------------------------------------------------------------ the stress test


def _book_markets(book: PositionsBook) -> list[str]:
    return sorted({p.market for a in book.accounts for p in a.positions})


def drive(
    inp: StressInput, moves: list[float], markets: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The book as given and in the other margin mode, each at no move and at every move:
    position rows, stress rows, and notes (an other-mode book that cannot be opened)."""
    book = inp.book
    alt = other_mode(book, inp.scenario, inp.prices)
    notes: list[str] = []
    position_rows: list[dict[str, Any]] = []
    stress_rows: list[dict[str, Any]] = []
    for b in (book, alt):
        try:
            chain = StressChain(inp, b)
        except PositionsError as err:
            if b is book:
                raise
            notes.append(f"The other-mode book cannot be opened: {err.reason}")
            continue
        position_rows += chain.position_rows()
        stress_rows += chain.stress(0.0, markets)  # no move: only what is liquidatable already
        for move in moves:
            stress_rows += StressChain(inp, b).stress(move, markets)
    return position_rows, stress_rows, notes


def run_stress(
    path: str | Path, moves: list[float], markets: list[str] | None, out: str | Path, argv: str = ""
) -> StressResult:
    """Stress the positions file ``path`` by ``moves`` of ``markets`` (None: every market of
    the book) and write the results to the folder ``out``."""
    inp = load_positions(path)
    names = list(inp.scenario.market_names)
    if markets is None:
        markets = [n for n in names if n in _book_markets(inp.book)]
    for m in markets:
        if m not in names:
            raise ConfigError("--markets", f"no market named {m!r} (markets: {', '.join(names)})")
    position_rows, stress_rows, notes = drive(inp, moves, markets)
    res = tabulate(Path(out), inp, markets, position_rows, stress_rows, notes)
    write_results(res, argv)
    return res
