"""Calibrated price feedback: square-root impact, depth that thins with volatility, forced flow
scaled to the represented book, the per-run feedback figure and the per-liquidation flag."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from agents.intents import Hedge
from sim.exchange.book import CROSS, AccountBook, AccountState, MarketRisk, PositionState
from sim.model.venue_flow import VenueFlow
from sim.output.recorder import Recorder
from sim.output.summary import feedback
from sim.scenario.impact import (
    depth_path,
    drawn_open_interest_usd,
    realized_volatility,
    representation_scale,
    sqrt_impact,
)
from sim.scenario.pricepath import ExternalMarket
from sim.scenario.schema import load_scenario
from sim.units import BASE, USD

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 10_000_000.0


def market(exo=None, scale=(1.0, 1.0), half_life=10.0) -> ExternalMarket:
    exo = np.tile([100.0, 1000.0], (51, 1)) if exo is None else exo
    return ExternalMarket(["ETH", "BTC"], exo, [DEPTH, DEPTH], [half_life] * 2, flow_scale=scale)


# -- impact law --------------------------------------------------------------------------------


def test_square_root_impact_of_the_one_percent_depth():
    assert sqrt_impact(-DEPTH, DEPTH) == pytest.approx(-0.01)
    assert sqrt_impact(4 * DEPTH, DEPTH) == pytest.approx(0.02)
    assert sqrt_impact(-DEPTH / 100, DEPTH) == pytest.approx(-0.001)
    assert sqrt_impact(0.0, DEPTH) == 0.0


def test_realized_volatility_of_a_steady_fall_is_its_step():
    exo = np.exp(-0.002 * np.arange(41))[:, None] * [100.0]
    vol = realized_volatility(exo, [10])
    assert vol[0, 0] == 0.0
    assert vol[5, 0] == pytest.approx(0.002)  # fewer than 10 returns yet
    assert vol[40, 0] == pytest.approx(0.002)


def test_depth_thins_with_volatility_squared_down_to_its_floor():
    calm_step = 0.001
    steps = np.r_[np.full(20, calm_step), np.full(20, 2 * calm_step), np.full(20, 8 * calm_step)]
    exo = 100.0 * np.exp(np.cumsum(np.r_[0.0, steps]))[:, None].repeat(2, axis=1)
    depth = depth_path(exo, [DEPTH, DEPTH], [calm_step, calm_step], [2.0, 0.0], [5, 5], [0.1, 0.1])
    assert depth[20, 0] == pytest.approx(DEPTH)  # calm: no thinning (never above the calm depth)
    assert depth[40, 0] == pytest.approx(DEPTH / 4)  # twice the volatility: a quarter
    assert depth[60, 0] == pytest.approx(DEPTH * 0.1)  # 8x: 1/64, floored at 10%
    assert np.all(depth[:, 1] == DEPTH)  # exponent 0: fixed depth


def test_forced_flow_stands_for_the_represented_book_the_rest_for_itself():
    m = market(scale=(1000.0, 1.0), half_life=1e9)
    m.apply_trade("ETH", -2_000.0, block=0, forced_usd=-1_000.0)  # 1,000 of it forced
    assert m.flow_usd("ETH", 1) == pytest.approx(-1_000.0 - 1_000.0 * 1000.0)
    assert m.impact("ETH", 1) == pytest.approx(math.expm1(sqrt_impact(-1_001_000.0, DEPTH)))
    m.apply_trade("ETH", 500.0, block=1, forced_usd=-100.0)  # forced of the other sign: none
    assert m.flow_usd("ETH", 2) == pytest.approx(-1_001_000.0 + 500.0)


def test_impact_without_spillover_takes_out_only_the_spillover_part():
    m = market(scale=(100.0, 1.0), half_life=1e9)
    m.apply_trade("ETH", -1e5, block=0, forced_usd=-1e5, spillover_usd=-4e4)
    full = sqrt_impact(-1e7, DEPTH)
    assert m.impact("ETH", 1) == pytest.approx(math.expm1(full))
    assert m.impact_without_spillover("ETH", 1) == pytest.approx(
        math.expm1(sqrt_impact(-6e6, DEPTH))
    )


def test_simulated_open_interest_and_the_representation_scale():
    profile = SimpleNamespace(markets=(0, 1), collateral_units=10_000 * USD, leverage=5.0)
    only_btc = SimpleNamespace(markets=(1,), collateral_units=1_000 * USD, leverage=2.0)
    oi = drawn_open_interest_usd([profile, only_btc], 3)
    assert oi.tolist() == [25_000.0, 27_000.0, 0.0]
    scale = representation_scale([1e9, 0.0, 5e9], oi)
    assert scale.tolist() == [pytest.approx(40_000.0), 1.0, 1.0]  # nothing represented / held


def test_scenario_markets_get_depth_and_scale():
    s = load_scenario(ROOT / "scenarios" / "default.toml")
    m = ExternalMarket.from_scenario(s, np.random.default_rng(1), [1e7, 4e7])
    assert m.depth[0].tolist() == [46e6, 115e6]
    assert m.flow_scale.tolist() == pytest.approx([14e9 / 1e7, 40.5e9 / 4e7])
    crash = slice(s.crash.start_block + 30, s.crash.end_block)
    assert np.all(m.depth[crash] < m.depth[0])  # the crash's volatility thins the book


# -- venue flow: which part of a hedge is forced --------------------------------------------------


class RecordingExternal:
    def __init__(self):
        self.trades = []

    def apply_trade(self, market, notional_usd, block, *, forced_usd=0.0, spillover_usd=0.0):
        self.trades.append((market, notional_usd, forced_usd, spillover_usd))


def ev(name, **args):
    return SimpleNamespace(name=name, args=args)


def test_a_hedge_carries_the_forced_share_of_the_flow_it_absorbs():
    flow = VenueFlow(2, lambda owner: owner == "arb")
    flow.track(
        [
            ev("Traded", owner="trader", market=0, sizeDelta=-1 * BASE),
            ev("PositionLiquidated", market=0, sizeClosed=-3 * BASE),
        ]
    )
    assert flow.base[0] == -4 * BASE and flow.forced[0] == -3 * BASE
    external = RecordingExternal()
    # the arbitrageur buys 2 of the 4 sold on the venue for 200 USD
    flow.hedge(Hedge(0, 2 * BASE, 200 * USD), external, block=7)
    ((m, notional, forced, spill),) = external.trades
    assert (m, notional, forced, spill) == (0, -200.0, -150.0, 0.0)
    assert flow.base[0] == -2 * BASE and flow.forced[0] == -3 * BASE // 2
    flow.track([ev("Traded", owner="trader", market=0, sizeDelta=3 * BASE)])  # net buy now
    assert flow.forced[0] == 0  # forced selling netted out by buys


# -- the per-liquidation flag ---------------------------------------------------------------------


RISK = [MarketRisk(50_000, 30_000, 15_000, 500_000)] * 2


def flagging_recorder(impact_log: float, later_eth=100.0) -> tuple[Recorder, AccountState]:
    """A recorder over a flat market whose ETH price carries ``impact_log`` of impact (the
    exogenous ETH price moves to ``later_eth`` from block 30), and a 10x long of 1 ETH bought
    at 100 USD with 10 USD of collateral."""
    exo = np.tile([100.0, 1000.0], (51, 1))
    exo[30:, 0] = later_eth
    ext = market(exo, scale=(1.0, 1.0), half_life=1e9)
    ext.apply_trade("ETH", math.copysign(DEPTH * (impact_log / 0.01) ** 2, impact_log), 0)
    rec = Recorder.__new__(Recorder)
    rec.model = SimpleNamespace(external=ext, block=1, view=SimpleNamespace(book=AccountBook(RISK)))
    acct = AccountState("0xa", 0, CROSS, 0, collateral_units=10 * USD)
    acct.positions[0] = PositionState(BASE, 100 * USD)
    return rec, acct


def prices_e8(rec: Recorder) -> list[int]:
    return [round(rec.model.external.price(i, 1) * 1e8) for i in range(2)]


def test_liquidation_caused_by_feedback_is_flagged():
    rec, acct = flagging_recorder(-0.08)  # ETH at 92.3: equity 2.3 < 2.77 maintenance
    assert rec._caused_by(acct, prices_e8(rec)) == {
        "feedback_caused": True,
        "feedback_only": True,  # the exogenous price never falls
        "after_spillover": False,  # no spillover flow
    }
    rec, acct = flagging_recorder(-0.08, later_eth=90.0)  # the exogenous fall gets there later
    flags = rec._caused_by(acct, prices_e8(rec))
    assert flags["feedback_caused"] and not flags["feedback_only"]


def test_liquidation_the_exogenous_path_explains_is_not_flagged():
    rec, acct = flagging_recorder(-0.08)
    acct.collateral_units = 2 * USD  # liquidatable at 100 USD already (2 < 3 maintenance)
    assert rec._caused_by(acct, prices_e8(rec))["feedback_caused"] is False
    rec, acct = flagging_recorder(0.0)
    acct.collateral_units = 1 * USD
    assert rec._caused_by(acct, prices_e8(rec))["feedback_caused"] is False


# -- the per-run feedback figure ---------------------------------------------------------------


def test_feedback_share_at_trough_and_end():
    exo = [100.0, 95.0, 90.0, 92.0, 94.0]
    actual = [100.0, 93.0, 85.0, 90.0, 94.0]  # impact deepens the trough, gone at the end
    blocks = pd.DataFrame({"ETH_external_usd": actual[:4]})
    exogenous = pd.DataFrame(
        {"ETH_exogenous_usd": exo, "ETH_external_depth_usd": [10.0, 10.0, 2.0, 5.0, 10.0]}
    )
    liq = pd.DataFrame({"notional_usd": [5.0, 7.0], "feedback_caused": [True, False]})
    fb = feedback(blocks, exogenous, liq, ["ETH"])
    eth = fb["markets"]["ETH"]
    assert eth["trough"] == {
        "block": 2,
        "fall": pytest.approx(0.15, abs=1e-6),
        "exogenous_fall": pytest.approx(0.10, abs=1e-6),
        "feedback_share": pytest.approx(1 / 3, abs=1e-6),
    }
    assert eth["end"]["feedback_share"] == pytest.approx((0.10 - 0.08) / 0.10, abs=1e-6)
    assert eth["peak_impact"] == pytest.approx(85 / 90 - 1, abs=1e-6)
    assert eth["min_depth_fraction"] == pytest.approx(0.2, abs=1e-6)
    assert fb["liquidations_caused"] == 1 and fb["notional_caused_usd"] == 5.0
    assert fb["feedback_share_at_trough"] == pytest.approx(1 / 3, abs=1e-6)


def test_no_fall_no_share():
    blocks = pd.DataFrame({"ETH_external_usd": [100.0, 101.0]})
    exogenous = pd.DataFrame({"ETH_exogenous_usd": [100.0, 101.0, 102.0]})
    fb = feedback(blocks, exogenous, pd.DataFrame(), ["ETH"])
    assert fb["markets"]["ETH"]["trough"]["feedback_share"] is None
    assert fb["feedback_share_at_trough"] is None and fb["liquidations_caused"] == 0


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("impact", ["true", "false"])
def test_a_run_records_impact_and_flags(impact):
    from sim.api import run_scenario

    over = [
        f"run.endogenous_impact={impact}",
        "markets.0.represented_open_interest_usd=14e9",
        "markets.1.represented_open_interest_usd=40.5e9",
    ]
    result = run_scenario(
        ROOT / "scenarios" / "tiny.toml", seed=1, overrides=over, counterfactual=False
    )
    blocks, exo = result.tables["blocks"], result.tables["exogenous"]
    n = len(blocks)
    for name in ("ETH", "BTC"):
        expected = exo[f"{name}_exogenous_usd"][:n].to_numpy() * (1 + blocks[f"{name}_impact"])
        assert np.allclose(blocks[f"{name}_external_usd"], expected)
    liq = result.tables["liquidations"]
    fb = result.summary["feedback"]
    assert set(fb["markets"]) == {"ETH", "BTC"}
    if impact == "false":
        assert (blocks[["ETH_impact", "BTC_impact"]] == 0).all().all()
        assert not liq["feedback_caused"].any() and fb["liquidations_caused"] == 0
        assert fb["peak_impact"] == 0.0
    else:
        assert fb["liquidations_caused"] == int(liq["feedback_caused"].sum())
