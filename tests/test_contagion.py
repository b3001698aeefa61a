"""Cross-margin contagion through prices: spillover closes of CROSS liquidations, their share of
the hedged flow, the summary figures and the contagion scenario."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from agents.intents import Hedge
from sim.exchange.book import CROSS, ISOLATED, AccountBook, AccountState, MarketRisk, PositionState
from sim.model.venue_flow import VenueFlow
from sim.output.contagion import spillover_closes
from sim.output.summary import spillover
from sim.scenario.pricepath import exogenous_paths
from sim.scenario.schema import load_scenario
from sim.units import BASE, USD

ROOT = Path(__file__).resolve().parents[1]
RISK = [MarketRisk(50_000, 30_000, 15_000, 500_000)] * 2
PRICES = [90 * 10**8, 1_100 * 10**8]  # ETH fell from 100, BTC rose from 1,000


def book_with(mode: int, positions: dict[int, PositionState]) -> AccountBook:
    book = AccountBook(RISK)
    acct = AccountState("0xa", 0, mode, 0, collateral_units=5 * USD)
    acct.positions.update(positions)
    book.accounts[acct.key] = acct
    return book


def long(size: int, basis_usd: int) -> PositionState:
    return PositionState(size * BASE, basis_usd * USD)


def close(market: int, size: int, quote_usd: int, name="PositionLiquidated"):
    if name == "BackstopTakeover":
        args = {"market": market, "size": size * BASE, "quote": quote_usd * USD}
    else:
        args = {"market": market, "sizeClosed": -size * BASE, "quoteDelta": -quote_usd * USD}
    return SimpleNamespace(name=name, args={"owner": "0xa", "subaccount": 0, **args})


def test_a_cross_liquidation_spills_over_into_the_market_in_profit():
    book = book_with(CROSS, {0: long(1, 100), 1: long(1, 1_000)})
    events = [close(0, 1, 89), close(1, 1, 1_095)]
    (spill,) = spillover_closes(book, events, lambda: PRICES)
    assert (spill.market, spill.size_base, spill.notional_units) == (1, -BASE, 1_095 * USD)
    assert spill.on_venue
    (taken,) = spillover_closes(book, [close(1, 1, 1_100, "BackstopTakeover")], lambda: PRICES)
    assert not taken.on_venue


def test_no_spillover_from_isolated_single_market_or_losing_positions():
    assert (
        spillover_closes(book_with(ISOLATED, {1: long(1, 1_000)}), [close(1, 1, 1)], lambda: PRICES)
        == []
    )
    assert (
        spillover_closes(book_with(CROSS, {1: long(1, 1_000)}), [close(1, 1, 1)], lambda: PRICES)
        == []
    )
    losing_both = book_with(CROSS, {0: long(1, 100), 1: long(1, 1_200)})
    assert spillover_closes(losing_both, [close(0, 1, 1), close(1, 1, 1)], lambda: PRICES) == []


def test_prices_are_read_only_when_something_is_closed():
    def no_prices():
        raise AssertionError("prices read without a close")

    assert (
        spillover_closes(AccountBook(RISK), [SimpleNamespace(name="Traded", args={})], no_prices)
        == []
    )


class RecordingExternal:
    def __init__(self):
        self.trades = []

    def apply_trade(self, market, notional_usd, block, *, forced_usd=0.0, spillover_usd=0.0):
        self.trades.append((notional_usd, forced_usd, spillover_usd))


def test_spillover_flow_is_part_of_the_forced_flow_a_hedge_absorbs():
    book = book_with(CROSS, {0: long(2, 200), 1: long(4, 4_000)})
    events = [close(0, 2, 178), close(1, 4, 4_380)]
    flow = VenueFlow(2, lambda owner: False)
    flow.track(events, spillover_closes(book, events, lambda: PRICES))
    assert flow.forced[1] == flow.spill[1] == -4 * BASE and flow.spill[0] == 0
    external = RecordingExternal()
    flow.hedge(Hedge(1, 1 * BASE, 1_100 * USD), external, block=3)
    assert external.trades == [(-1_100.0, -1_100.0, -1_100.0)]
    assert flow.spill[1] == -3 * BASE
    flow.track(
        [SimpleNamespace(name="Traded", args={"owner": "t", "market": 1, "sizeDelta": BASE})]
    )
    assert flow.base[1] == -2 * BASE and flow.spill[1] == -2 * BASE  # limited to the net flow


def test_spillover_summary():
    liq = pd.DataFrame(
        {
            "notional_usd": [100.0, 40.0, 10.0],
            "spillover_notional_usd": [30.0, 0.0, 0.0],
            "after_spillover": [False, True, False],
        }
    )
    assert spillover(liq) == {
        "spillover_notional_usd": 30.0,
        "spillover_liquidations": 1,
        "liquidations_after_spillover": 1,
        "notional_after_spillover_usd": 40.0,
    }
    assert spillover(pd.DataFrame())["liquidations_after_spillover"] == 0


def test_the_contagion_scenario_crashes_one_market_only():
    s = load_scenario(ROOT / "scenarios" / "contagion.toml")
    default = load_scenario(ROOT / "scenarios" / "default.toml")
    assert [m.crash_fall for m in s.markets] == [0.25, 0.0]
    assert s.markets[1].external_depth_usd == default.markets[1].external_depth_usd
    path = exogenous_paths(s, np.random.default_rng(np.random.SeedSequence(1).spawn(3)[0]))
    end = s.crash.end_block
    assert path[end, 0] / path[0, 0] < 0.85  # ETH fell
    assert path[end, 1] / path[0, 1] == pytest.approx(1.0, abs=0.05)  # BTC only wandered
