"""Agents' decisions from given observations (the view and the external price are set by hand)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agents.arbitrageur import Arbitrageur
from agents.liquidator import Liquidator, liquidation_label
from agents.oracle_reporter import OracleReporter
from agents.trader import Trader, plan_subaccounts
from sim.api import resolve_scenario
from sim.exchange.book import AccountState, PositionState
from sim.model import LiqSimModel
from sim.model.venue_flow import absorbed_flow
from sim.scenario.population import TraderProfile
from sim.units import GWEI

TINY = Path(__file__).resolve().parent.parent / "scenarios" / "tiny.toml"


class FixedExternal:
    """External market stub: constant prices per market."""

    def __init__(self, prices_e8):
        self.prices_e8 = list(prices_e8)
        self.trades = []

    def price_e8(self, market, block):
        return self.prices_e8[market]

    def price(self, market, block):
        if isinstance(market, str):
            market = {"ETH": 0, "BTC": 1}[market]
        return self.prices_e8[market] / 1e8

    def apply_trade(self, market, notional_usd, block, *, forced_usd=0.0, spillover_usd=0.0):
        self.trades.append((market, notional_usd))


@pytest.fixture
def model():
    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=2", "liquidators.count=2"]), seed=1)
    m.external = FixedExternal([o.price_e8 for o in m.view.oracles])
    return m


def _in_flight(model, agent):
    """The agent's pending transactions, as its wallet keeps them."""
    return model.wallets[agent.address].in_flight


def _pending(model, kind):
    return [p for p in model.builder.mempool.pending() if p.submission.sender_kind == kind]


# ---------------------------------------------------------------- oracle reporter


def test_reporter_writes_only_past_the_deviation_threshold(model):
    reporter = next(iter(model.agents_by_type[OracleReporter]))
    p0 = model.view.oracles[0].price_e8
    model.external.prices_e8[0] = int(p0 * 1.004)  # 0.4% < 0.5%
    model.act(reporter)
    assert not _pending(model, "oracle")
    model.external.prices_e8[0] = int(p0 * 1.006)
    model.act(reporter)
    (tx,) = _pending(model, "oracle")
    assert tx.submission.label == "report:0"
    assert int.from_bytes(tx.signed.data[4:36], "big") == int(p0 * 1.006)


def test_reporter_heartbeat_and_replacement(model):
    reporter = next(iter(model.agents_by_type[OracleReporter]))
    model.view.timestamp_s = model.view.oracles[1].updated_at_s + 3600  # heartbeat passed
    model.act(reporter)
    labels = sorted(p.submission.label for p in _pending(model, "oracle"))
    assert labels == ["report:0", "report:1"]
    # the price moves again past the threshold while the report waits: same nonce, new price
    (old,) = [p for p in _pending(model, "oracle") if p.submission.label == "report:0"]
    model.external.prices_e8[0] = int(model.external.prices_e8[0] * 0.99)
    model.act(reporter)
    (new,) = [p for p in _pending(model, "oracle") if p.submission.label == "report:0"]
    assert (
        new.nonce == old.nonce
        and new.signed.max_priority_fee_per_gas_wei > old.signed.max_priority_fee_per_gas_wei
    )
    assert int.from_bytes(new.signed.data[4:36], "big") == model.external.prices_e8[0]


# --------------------------------------------------------------------- liquidator


def _underwater_account(model) -> AccountState:
    owner = model.session.accounts[2].address
    acct = AccountState(owner, 0, 2, 0, collateral_units=100 * 10**6)
    price = model.view.oracles[0].price_e8
    size = 10**18 * 10  # 10 ETH long, ~25,000 USD, equity 100 + pnl
    acct.positions[0] = PositionState(
        size, size * price // 10**20 + 90 * 10**6
    )  # bought 90 USD above
    acct.first_liquidatable_block = 0
    model.liquidatable = [acct]
    return acct


def test_liquidator_waits_for_its_latency_then_bids(model, monkeypatch):
    acct = _underwater_account(model)
    monkeypatch.setattr(
        model, "confirm_liquidatable", lambda cands: [(a, 300 * 10**6) for a in cands]
    )
    slow, fast = sorted(model.agents_by_type[Liquidator], key=lambda a: a.address)
    slow.params = replace(slow.params, latency_blocks=3)
    fast.params = replace(fast.params, latency_blocks=0)
    model.block = 1
    model.act(slow)
    assert not _pending(model, "liquidator")
    model.act(fast)
    (tx,) = _pending(model, "liquidator")
    assert tx.submission.label == liquidation_label(acct.owner, 0)
    assert tx.signed.max_priority_fee_per_gas_wei == fast.params.opening_bid_wei


def test_liquidators_outbid_each_other_up_to_the_cap(model, monkeypatch):
    _underwater_account(model)
    monkeypatch.setattr(
        model, "confirm_liquidatable", lambda cands: [(a, 300 * 10**6) for a in cands]
    )
    a, b = sorted(model.agents_by_type[Liquidator], key=lambda x: x.address)
    a.params = replace(a.params, latency_blocks=0)
    b.params = replace(b.params, latency_blocks=0)
    model.block = 1
    model.act(a)
    model.act(b)
    bids = {p.sender: p.signed.max_priority_fee_per_gas_wei for p in _pending(model, "liquidator")}
    assert bids[b.address] == int(bids[a.address] * (1 + b.params.bid_increment)) + 1
    model.act(a)  # a sees b's higher bid on its pending liquidation and bumps it (same nonce)
    bids2 = {p.sender: p.signed.max_priority_fee_per_gas_wei for p in _pending(model, "liquidator")}
    assert bids2[a.address] > bids[b.address]
    # b cannot outbid a without passing its own cap
    b.params = replace(b.params, bid_cap_wei=bids2[a.address])
    model.act(b)
    bids3 = {p.sender: p.signed.max_priority_fee_per_gas_wei for p in _pending(model, "liquidator")}
    assert bids3[b.address] == bids[b.address]  # b stays where it was
    assert bids3[a.address] == bids2[a.address]


def test_liquidator_skips_when_gas_costs_more_than_the_reward(model, monkeypatch):
    _underwater_account(model)
    monkeypatch.setattr(
        model, "confirm_liquidatable", lambda cands: [(a, 1 * 10**6) for a in cands]
    )
    liq = next(iter(model.agents_by_type[Liquidator]))
    liq.params = replace(liq.params, latency_blocks=0)
    model.block = 1
    model.view.next_base_fee_wei = 5_000 * GWEI  # extreme congestion
    model.act(liq)
    assert not _pending(model, "liquidator") and liq.skipped_unprofitable == 1


# ------------------------------------------------------------------------- trader


def _trader(model, **changes) -> Trader:
    t = next(iter(model.agents_by_type[Trader]))
    t.profile = replace(t.profile, **changes)
    return t


def test_plan_subaccounts_same_exposure_and_capital():
    p = TraderProfile((0, 1), (1, -1), 5.0, 10_001, 0, 0, 100, 0.0, "cross")
    (cross,) = plan_subaccounts(p, "cross")
    iso = plan_subaccounts(p, "isolated")
    assert cross.markets == (0, 1) and cross.collateral_units == 10_001
    assert [s.markets for s in iso] == [(0,), (1,)]
    assert sum(s.collateral_units for s in iso) == 10_001


def test_trader_opens_at_its_entry_block(model):
    t = _trader(model, entry_block=3)
    model.block = 2
    model.act(t)
    assert not _in_flight(model, t)
    model.block = 3
    model.act(t)
    labels = [f.label for f in _in_flight(model, t).values()]
    assert labels[0] == "open:openSubaccount" and labels[-1] == "open:trade"
    assert t.state == "open"


def _opened(model, t, loss_units):
    t.state = "open"
    sub = t.subs[0]
    acct = AccountState(
        t.address,
        sub.subaccount,
        1,
        0,
        collateral_units=sub.collateral_units,
        deposited_units=sub.collateral_units,
    )
    price = model.view.oracles[0].price_e8
    size = 10**17
    acct.positions[0] = PositionState(size, size * price // 10**20 + loss_units)
    model.view.book.accounts[acct.key] = acct
    return acct


def test_stop_loss_closes_the_position(model):
    t = _trader(
        model, stop_loss=0.5, collateral_units=1_000 * 10**6, entry_block=0, holding_blocks=10**6
    )
    t.subs = plan_subaccounts(t.profile, "cross")
    _opened(model, t, loss_units=600 * 10**6)
    model.act(t)
    assert [f.label for f in _in_flight(model, t).values()] == ["stop"] and t.stops == 1


def test_top_up_after_the_reaction_delay(model):
    t = _trader(
        model, stop_loss=0.0, collateral_units=1_000 * 10**6, entry_block=0, holding_blocks=10**6
    )
    t.subs = plan_subaccounts(t.profile, "cross")
    t.params = replace(t.params, derisk_fraction=0.0, top_up_delay_blocks=2)
    acct = _opened(model, t, loss_units=995 * 10**6)  # equity ~5 USD, health < 1.5
    model.block = 10
    model.act(t)
    assert not _in_flight(model, t)  # the reaction delay starts
    model.block = 12
    model.act(t)
    assert [f.label for f in _in_flight(model, t).values()] == ["topup"]
    assert acct.key == (t.address, 0)


# -------------------------------------------------------------------- arbitrageur


def test_absorbed_flow():
    assert absorbed_flow(5, -10) == 5
    assert absorbed_flow(15, -10) == 10
    assert absorbed_flow(-3, 10) == -3
    assert absorbed_flow(5, 10) == 0 and absorbed_flow(5, 0) == 0


def test_arbitrageur_trades_toward_the_external_price(model):
    arb = next(iter(model.agents_by_type[Arbitrageur]))
    mark = model.view.venues[0].mark_e8
    model.external.prices_e8 = [mark, model.view.venues[1].mark_e8]
    model.act(arb)
    assert not _in_flight(model, arb)  # no gap
    model.external.prices_e8[0] = int(mark * 0.98)  # venue 2% above external: sell the venue
    model.act(arb)
    (flight,) = _in_flight(model, arb).values()
    size = int.from_bytes(flight.signed.data[4 + 64 : 4 + 96], "big", signed=True)
    assert flight.label == "arb:0" and size < 0


def test_a_transaction_priced_out_by_a_fee_spike_is_re_sent(model):
    """A pending transaction whose fee cap the base fee outgrew is re-sent at the current cap
    (same nonce), so a fee spike cannot leave an agent blocked forever."""
    arb = next(iter(model.agents_by_type[Arbitrageur]))
    model.external.prices_e8[0] = int(model.view.venues[0].mark_e8 * 0.98)
    model.act(arb)
    (old,) = _in_flight(model, arb).values()
    model.wallets[arb.address].reprice_stuck(model.block, model.view.next_base_fee_wei)
    assert list(_in_flight(model, arb).values()) == [old]  # still affordable: left alone
    model.view.next_base_fee_wei = old.signed.max_fee_per_gas_wei + 1  # the spike
    model.wallets[arb.address].reprice_stuck(model.block, model.view.next_base_fee_wei)
    (new,) = _in_flight(model, arb).values()
    assert new.signed.nonce == old.signed.nonce
    assert new.signed.max_fee_per_gas_wei >= 2 * model.view.next_base_fee_wei
    assert [p.signed.tx_hash for p in _pending(model, "arbitrageur")] == [new.signed.tx_hash]
