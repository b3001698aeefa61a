"""Congestion and crowding-out: the wallets' fee history, background demand that follows
volatility and activity, the pre-London first-price market, traders' and the oracle's fee
estimates, and the block-space figures of a run."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from agents.oracle_reporter import OracleReporter
from agents.trader import Trader, plan_subaccounts
from sim.api import resolve_scenario
from sim.market.background import (
    BackgroundDemand,
    TierShape,
    UrgentDemandParams,
    VolatilityStress,
    spread_bid,
    tier_tips_wei,
)
from sim.market.builder import select_transactions
from sim.market.fee_history import BlockTips, FeeHistory, lowest_tips
from sim.market.feemarket import BackgroundBid, FeeMarket
from sim.market.mempool import Mempool, Submission
from sim.model import LiqSimModel
from sim.model.block_space import calm_block_volatility
from sim.output.block_space import block_space, longest_run
from sim.units import GWEI
from tests.test_agents import FixedExternal, _opened
from tests.test_builder import A, B, _tx

TINY = Path(__file__).resolve().parent.parent / "scenarios" / "tiny.toml"

# ------------------------------------------------------------------------ fee history


def test_fee_history_suggests_a_percentile_of_recent_cheapest_tips():
    history = FeeHistory(blocks=3, floor_tip_wei=1)
    assert history.suggest_tip_wei(60) == 1  # no history: the floor
    history.record(BlockTips(1, (10, 20, 30), 1.0))
    history.record(BlockTips(2, (40, 50, 60), 1.0))
    assert history.suggest_tip_wei(0) == 10
    assert history.suggest_tip_wei(50) == 40
    assert history.suggest_tip_wei(100) == 60
    assert history.suggest_tip_wei(0, blocks=1) == 40  # only the last block
    history.record(BlockTips(3, (), 0.0))  # an empty block contributes the floor
    history.record(BlockTips(4, (70,), 1.0))  # the oldest block falls out of the window
    assert history.suggest_tip_wei(0) == 1 and history.suggest_tip_wei(100) == 70


def test_lowest_tips_ignores_empty_entries_and_keeps_the_three_cheapest():
    assert lowest_tips([(5, 10), (1, 0), (3, 7), (9, 1), (4, 2)]) == (3, 4, 5)


# ------------------------------------------------------------------ background demand


def test_tiers_spread_around_the_median_and_keep_all_gas():
    tips = tier_tips_wei(100, 7, 0.5)
    assert tips == sorted(tips) and tips[3] == 100  # odd count: the middle tier is the median
    assert tips[0] < 60 and tips[-1] > 160
    assert tier_tips_wei(100, 5, 0.0) == [100] * 5
    bids = spread_bid(1_000_003, 100, 4, 0.5, median_max_fee_wei=1_000)
    assert sum(b.gas for b in bids) == 1_000_003
    assert [b.max_fee_wei for b in bids] == sorted(b.max_fee_wei for b in bids)


def _urgent(**changes) -> UrgentDemandParams:
    base = UrgentDemandParams(
        block_gas_limit=30_000_000,
        urgent_utilization=0.6,
        full_stress_volatility_ratio=4.0,
        volatility_half_life_blocks=5.0,
        calm_tip_wei=1 * GWEI,
        crash_tip_wei=10 * GWEI,
        median_max_fee_wei=60 * GWEI,
        calm_block_volatility=(0.001,),
    )
    return replace(base, **changes)


def test_stress_stays_low_in_calm_and_rises_with_volatility():
    calm = VolatilityStress(_urgent())
    price = 100.0
    for k in range(200):
        price *= math.exp(0.001 * (1 if k % 2 else -1))  # exactly the calm volatility
        calm.observe([price])
    assert calm.stress == pytest.approx(0.0, abs=0.01)
    wild = VolatilityStress(_urgent())
    for k in range(50):
        price *= math.exp(0.006 * (1 if k % 2 else -1))  # 6x calm
        wild.observe([price])
    assert wild.stress == 1.0 and wild.ratio > 5


class _Flat:
    def at(self, step, base_fee_wei):
        return 1_000_000, 2 * GWEI


def test_background_adds_urgent_demand_under_stress_and_echoes_activity():
    demand = BackgroundDemand(
        _Flat(), shape=TierShape(4, 0.5), urgent=_urgent(), activity_multiple=10
    )
    demand.observe([100.0])
    calm_bids = demand(0, 10 * GWEI)
    assert sum(b.gas for b in calm_bids) == 1_000_000  # elastic only
    price = 100.0
    for k in range(50):
        price *= math.exp(0.01 * (1 if k % 2 else -1))
        demand.observe([price], activity=[(50 * GWEI, 100_000)])
    bids = demand(1, 10 * GWEI)
    urgent_gas = int(0.6 * 30_000_000)
    assert sum(b.gas for b in bids) == 1_000_000 + urgent_gas + 1_000_000
    assert BackgroundBid(1_000_000, 50 * GWEI) in bids  # 10x our liquidator's gas at its tip
    assert max(b.max_fee_wei or 0 for b in bids) > 60 * GWEI  # urgent caps spread around 60
    assert BackgroundDemand(None)(0, 0) == ()


def test_calm_block_volatility_scales_annual_volatility_to_a_block():
    s = resolve_scenario(TINY)
    vol = calm_block_volatility(s)
    expected = s.markets[0].volatility_annual * math.sqrt(s.run.block_time_s / (365 * 86400))
    assert vol[0] == pytest.approx(expected)


# ---------------------------------------------------------------- first-price market


def test_first_price_market_has_no_base_fee_and_tips_decide_inclusion():
    assert FeeMarket(10 * GWEI, first_price=True).base_fee_for_next(None) == 0
    pool = Mempool()
    low = _tx(A, 0, 40 * GWEI, max_fee=40 * GWEI, gas=100_000)
    high = _tx(B, 0, 90 * GWEI, max_fee=90 * GWEI, gas=100_000)
    for tx in (low, high):
        pool.submit(Submission(tx, "trader"), 1, 0)
    background = spread_bid(1_500_000, 60 * GWEI, 8, 0.5)  # 1.5x the gas limit
    selection = select_transactions(
        pool.queues(),
        chain_nonce=lambda s: 0,
        balance_wei=lambda s: 10**30,
        base_fee_wei=0,
        gas_limit=1_000_000,
        background=background,
    )
    assert [p.sender for p in selection.chosen] == [B]  # above the clearing tip
    assert [(p.sender, why) for p, why in selection.waiting] == [(A, "no_space")]
    assert selection.background_gas + 100_000 <= 1_000_000
    assert min(tip for tip, _ in selection.background_tips) > 40 * GWEI


def test_a_first_price_run_pays_gas_prices_without_a_base_fee():
    s = resolve_scenario(
        TINY, ["chain.fee_market=first_price", "crash.enabled=false", "run.blocks=12"]
    )
    model = LiqSimModel(s, seed=3)
    model.run()
    blocks = model.recorder.tables()["blocks"]
    tx = model.recorder.tables()["transactions"]
    assert (blocks["base_fee_gwei"] == 0).all() and not tx.empty
    assert (tx["effective_gas_price_wei"] == tx["priority_fee_per_gas_wei"]).all()
    assert (tx["priority_fee_per_gas_wei"] > 0).all()


# -------------------------------------------------------------- agents' fee estimates


@pytest.fixture
def model():
    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=2", "liquidators.count=1"]), seed=1)
    m.external = FixedExternal([o.price_e8 for o in m.view.oracles])
    for n in range(5):
        m.fee_history.record(BlockTips(n, (7 * GWEI, 8 * GWEI, 9 * GWEI), 1.0))
    return m


def _at_risk_trader(model) -> Trader:
    """A CROSS trader whose stop-loss fires now (600 of 1,000 USD lost)."""
    t = next(iter(model.agents_by_type[Trader]))
    t.profile = replace(
        t.profile,
        stop_loss=0.5,
        collateral_units=1_000 * 10**6,
        entry_block=0,
        holding_blocks=10**6,
    )
    t.subs = plan_subaccounts(t.profile, "cross")
    _opened(model, t, loss_units=600 * 10**6)
    return t


def test_a_rescue_is_priced_from_the_fee_history_and_sped_up_when_it_waits(model):
    t = _at_risk_trader(model)
    model.act(t)  # the stop-loss, at the wallet's 'fast' estimate
    (flight,) = model.wallets[t.address].in_flight.values()
    assert flight.label == "stop" and flight.signed.max_priority_fee_per_gas_wei == 9 * GWEI
    assert not model.wallets[t.address].auto_reprice  # the trader speeds up itself
    model.block += t.params.speed_up_after_blocks - 1
    model.act(t)
    assert list(model.wallets[t.address].in_flight.values()) == [flight]  # not yet
    for n in range(5, 25):  # the fee level moved on
        model.fee_history.record(BlockTips(n, (30 * GWEI, 31 * GWEI, 32 * GWEI), 1.0))
    model.block += 1
    model.act(t)
    (sped_up,) = model.wallets[t.address].in_flight.values()
    assert sped_up.signed.nonce == flight.signed.nonce
    assert sped_up.signed.max_priority_fee_per_gas_wei == 32 * GWEI and t.speed_ups == 1


def test_fixed_tips_when_the_fee_history_is_off(model):
    t = _at_risk_trader(model)
    t.params = replace(t.params, tip_from_fee_history=False)
    model.act(t)
    (flight,) = model.wallets[t.address].in_flight.values()
    assert flight.signed.max_priority_fee_per_gas_wei == t.params.priority_fee_wei


def test_reporter_bids_the_estimate_and_bumps_as_a_chainlink_node(model):
    reporter = next(iter(model.agents_by_type[OracleReporter]))
    p = reporter.params
    assert (p.tip_percentile, p.estimator_blocks, p.bump_threshold_blocks) == (50, 4, 3)
    model.external.prices_e8[0] = int(model.view.oracles[0].price_e8 * 1.01)
    model.act(reporter)
    (flight,) = model.wallets[reporter.address].in_flight.values()
    first_tip = flight.signed.max_priority_fee_per_gas_wei
    assert first_tip == max(p.priority_fee_wei, 8 * GWEI)
    model.block += 2
    model.act(reporter)  # waited 2 < 3 blocks: no bump
    assert list(model.wallets[reporter.address].in_flight.values()) == [flight]
    model.block += 1
    model.act(reporter)
    (bumped,) = model.wallets[reporter.address].in_flight.values()
    assert bumped.signed.max_priority_fee_per_gas_wei == max(
        int(first_tip * 1.2) + 1, first_tip + 5 * GWEI
    )


# ------------------------------------------------------------------ block-space figures


def test_block_space_counts_full_blocks_and_crowded_rescues():
    blocks = pd.DataFrame(
        {
            "block_fill": [0.5, 1.0, 1.0, 0.9, 1.0],
            "background_gas_demanded": [10, 30, 30, 30, 30],
            "background_gas_used": [10, 20, 20, 30, 25],
            "background_stress": [0.0, 0.5, 1.0, 1.0, 0.2],
        }
    )
    tx = pd.DataFrame(
        {
            "sender_kind": ["trader", "trader", "oracle", "liquidator"],
            "label": ["topup", "open:trade", "report:0", "liquidate:x/0"],
            "inclusion_delay_blocks": [4, 0, 1, 7],
        }
    )
    dropped = pd.DataFrame(
        {
            "sender_kind": ["trader", "trader"],
            "label": ["stop", "stop"],
            "reason": ["replaced", "expired"],
        }
    )
    b = block_space(blocks, tx, dropped)
    assert (b["full_blocks"], b["longest_full_streak_blocks"]) == (3, 2)
    assert b["rescues"]["included"] == 1 and b["rescues"]["waited_3_or_more_blocks"] == 1
    assert b["rescues"]["never_included"] == 1  # a replacement is the same rescue re-priced
    assert b["oracle_reports"]["inclusion_delay_blocks"]["max"] == 1
    assert b["inclusion_delay_blocks_by_kind"]["liquidator"]["max"] == 7
    assert longest_run(pd.Series([True, False, True, True, True])) == 3


# ------------------------------------------------------------ queued background demand


def _block(demand, step, gas_limit, activity=()):
    """One block of background bids alone: offered, selected, settled; returns the bids and
    the gas each got."""
    demand.observe([100.0], activity=activity)
    bids = demand(step, 0)
    selection = select_transactions(
        {},
        chain_nonce=lambda s: 0,
        balance_wei=lambda s: 10**30,
        base_fee_wei=0,
        gas_limit=gas_limit,
        background=bids,
    )
    demand.settle(selection.background_included)
    return bids, selection.background_included


def test_left_out_activity_bids_come_back_with_their_remaining_gas():
    demand = BackgroundDemand(_Flat(), activity_multiple=10, queue_blocks=3)
    # 1M gas at 50 gwei (activity) and 1M at 2 gwei (elastic) for 600k of space
    bids, got = _block(demand, 0, 600_000, activity=[(50 * GWEI, 100_000)])
    assert dict(zip(bids, got, strict=True)) == {
        BackgroundBid(1_000_000, 2 * GWEI): 0,
        BackgroundBid(1_000_000, 50 * GWEI): 600_000,
    }
    # the elastic part re-decides; the activity remainder keeps bidding at its tip
    assert demand.queued == ((BackgroundBid(400_000, 50 * GWEI), 1),)
    bids, got = _block(demand, 1, 600_000)
    assert bids[0] == BackgroundBid(400_000, 50 * GWEI)  # queued first, then fresh
    assert got == (400_000, 200_000)
    assert demand.queued == ()  # fully included: does not come back


def test_queued_bids_expire_after_queue_blocks_and_nothing_queues_when_off():
    demand = BackgroundDemand(_Flat(), activity_multiple=10, queue_blocks=2)
    offered = []
    for step in range(5):
        activity = [(50 * GWEI, 100_000)] if step == 0 else []
        bids, _ = _block(demand, step, 0, activity=activity)  # no space at all
        offered.append(sum(b.gas for b in bids if b.priority_fee_wei == 50 * GWEI))
    assert offered == [1_000_000, 1_000_000, 1_000_000, 0, 0]  # first offer + 2 blocks queued
    off = BackgroundDemand(_Flat(), activity_multiple=10)
    _block(off, 0, 0, activity=[(50 * GWEI, 100_000)])
    off.observe([100.0])  # no activity this time
    assert off.queued == () and off(1, 0) == (BackgroundBid(1_000_000, 2 * GWEI),)


def test_queued_urgent_bids_keep_their_fee_caps():
    demand = BackgroundDemand(_Flat(), urgent=_urgent(block_gas_limit=1_000_000), queue_blocks=1)
    price = 100.0
    for k in range(50):
        price *= math.exp(0.01 * (1 if k % 2 else -1))
        demand.observe([price])
    bids = demand(0, 0)
    urgent = [b for b in bids if b.max_fee_wei is not None]
    assert urgent
    demand.settle([0] * len(bids))  # nothing got in
    assert [bid for bid, _ in demand.queued] == urgent  # same gas, tips and caps
    with pytest.raises(ValueError):
        demand.settle([0])  # one included gas per offered bid


def test_queued_background_demand_makes_congestion_a_backlog():
    """End to end: with fee caps that do not bind, the urgent and activity gas left out of full
    blocks queues, so more blocks are full and more background gas waits than without."""
    figures = {}
    for q in (0, 10):
        s = resolve_scenario(
            TINY, ["background.urgent_max_fee_multiple=100", f"background.queue_blocks={q}"]
        )
        model = LiqSimModel(s, seed=1)
        model.run()
        blocks = model.recorder.tables()["blocks"]
        unmet = blocks["background_gas_demanded"] - blocks["background_gas_used"]
        figures[q] = ((unmet > 0).mean(), unmet.sum(), blocks["block_fill"].mean())
    assert figures[10][0] > figures[0][0]  # full-block share
    assert figures[10][1] > 2 * figures[0][1]  # background gas left waiting
    assert figures[10][2] >= figures[0][2]
