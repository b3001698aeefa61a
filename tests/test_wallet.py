"""The wallet layer: intents become signed transactions (fee cap, affordability, nonces,
replacement with the mempool's bump, re-pricing), and agents decide without touching the chain."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agents.intents import Deposit, Liquidate, Replace, ReportPrice, Send, Trade
from agents.liquidator import Liquidator, liquidation_label
from agents.oracle_reporter import OracleReporter
from sim.api import resolve_scenario
from sim.exchange.book import AccountState, PositionState
from sim.model import LiqSimModel
from sim.units import ETHER, GWEI, USD
from sim.wallet import replacement_floor

TINY = Path(__file__).resolve().parent.parent / "scenarios" / "tiny.toml"


@pytest.fixture
def model():
    return LiqSimModel(resolve_scenario(TINY, ["traders.count=2", "liquidators.count=1"]), seed=3)


def _reporter_wallet(model):
    reporter = next(iter(model.agents_by_type[OracleReporter]))
    return model.wallets[reporter.address]


def test_replacement_floor_clears_the_mempool_bump():
    for fee in (1, 7, 10, 999, 2 * GWEI, 123_456_789_123):
        floor = replacement_floor(fee, 10)
        assert floor * 100 >= fee * 110  # what the mempool accepts
        assert floor == fee * 111 // 100 + 1


def test_send_signs_with_the_fee_cap_policy_and_tracks_the_pending_tx(model):
    wallet = _reporter_wallet(model)
    base = model.view.next_base_fee_wei
    pending = wallet.execute(Send(ReportPrice(0, 2_000 * 10**8), 3 * GWEI, "report:0"), 0, base)
    assert pending is not None and pending.label == "report:0"
    assert pending.action == ReportPrice(0, 2_000 * 10**8)
    cap = int(model.scenario.oracle.max_fee_multiplier * base) + 3 * GWEI
    assert (pending.priority_fee_wei, pending.max_fee_wei) == (3 * GWEI, cap)
    assert pending.min_replacement_priority_fee_wei == replacement_floor(3 * GWEI, 10)
    assert wallet.pending() == (pending,)
    (entry,) = model.builder.mempool.pending()
    assert "0x" + entry.tx_hash.hex() == pending.tx_id and entry.submission.sender_kind == "oracle"


def test_replace_keeps_the_nonce_and_raises_both_fees(model):
    wallet = _reporter_wallet(model)
    base = model.view.next_base_fee_wei
    first = wallet.execute(Send(ReportPrice(0, 2_000 * 10**8), GWEI, "report:0"), 0, base)
    # asking for less than the bump still clears it: the wallet raises the fee to the floor
    second = wallet.execute(Replace(first.tx_id, GWEI + 1, ReportPrice(0, 1_990 * 10**8)), 0, base)
    assert second is not None and second.tx_id != first.tx_id
    assert second.priority_fee_wei == replacement_floor(GWEI, 10)
    assert second.max_fee_wei >= replacement_floor(first.max_fee_wei, 10)
    assert second.action == ReportPrice(0, 1_990 * 10**8) and second.label == "report:0"
    (entry,) = model.builder.mempool.pending()
    old = next(iter(wallet.in_flight.values())).signed
    assert entry.nonce == old.nonce and wallet.pending() == (second,)
    # replacing a transaction we no longer have is refused, not an error
    assert wallet.execute(Replace(first.tx_id, 10 * GWEI), 0, base) is None


def test_unaffordable_intents_are_refused_and_take_no_nonce(model):
    liquidator = next(iter(model.agents_by_type[Liquidator]))
    wallet = model.wallets[liquidator.address]
    balance = model.session.balance(liquidator.address)
    # a priority fee whose worst-case gas exceeds the whole balance
    tip = balance // 100_000 + 1
    intent = Send(Liquidate(liquidator.address, 0, 1), tip, "liquidate:x")
    assert wallet.execute(intent, 0, model.view.next_base_fee_wei) is None
    assert not wallet.pending() and len(model.builder.mempool) == 0
    ok = wallet.execute(replace(intent, priority_fee_wei=GWEI), 0, model.view.next_base_fee_wei)
    assert ok is not None
    assert next(iter(wallet.in_flight.values())).signed.nonce == 0


def test_gas_free_runs_zero_every_priority_fee():
    m = LiqSimModel(resolve_scenario(TINY, ["traders.count=1", "run.gas_enabled=false"]), seed=1)
    wallet = _reporter_wallet(m)
    pending = wallet.execute(Send(ReportPrice(1, 60_000 * 10**8), 50 * GWEI, "report:1"), 0, 0)
    assert pending is not None and pending.priority_fee_wei == 0 and pending.max_fee_wei == 0


def test_reprice_stuck_resends_only_what_the_base_fee_outgrew(model):
    wallet = _reporter_wallet(model)
    base = model.view.next_base_fee_wei
    first = wallet.execute(Send(ReportPrice(0, 2_000 * 10**8), GWEI, "report:0"), 0, base)
    wallet.reprice_stuck(1, base)
    assert wallet.pending() == (first,)  # still affordable: left alone
    spike = first.max_fee_wei + 1
    wallet.reprice_stuck(1, spike)
    (new,) = wallet.pending()
    assert new.tx_id != first.tx_id and new.max_fee_wei >= spike and new.submitted_step == 1


def test_every_action_maps_to_its_contract_call(model):
    wallet = _reporter_wallet(model)
    ex = model.system.exchange
    calls = {
        "trade": wallet.call_for(Trade(0, 1, -(10**17), 1)),
        "liquidate": wallet.call_for(Liquidate(wallet.address, 2, 3)),
        "deposit": wallet.call_for(Deposit(1, 5 * USD)),
        "report": wallet.call_for(ReportPrice(1, 10**8)),
    }
    assert {k: c.to for k, c in calls.items()} == {
        "trade": ex.address,
        "liquidate": ex.address,
        "deposit": ex.address,
        "report": model.system.feeds[1].address,
    }
    assert calls["liquidate"].gas == model.system.config.gas.liquidate(3)
    fn, args = ex.decode_function_input(calls["trade"].data)
    assert fn.fn_name == "trade" and list(args.values()) == [0, 1, -(10**17), 1]


def test_a_liquidator_decides_from_its_view_alone(model):
    """The agent yields intents; nothing reaches the mempool until a wallet carries them out."""
    liquidator = next(iter(model.agents_by_type[Liquidator]))
    liquidator.params = replace(liquidator.params, latency_blocks=0)
    owner = model.session.accounts[2].address
    acct = AccountState(owner, 0, 2, 0, collateral_units=100 * USD)
    price = model.view.oracles[0].price_e8
    acct.positions[0] = PositionState(10 * 10**18, 10 * price // 100 + 90 * USD)
    acct.first_liquidatable_block = 0
    model.liquidatable = [acct]
    model.block = 1
    view = replace(model.view_for(liquidator), _health_of=lambda c: [(a, 300 * USD) for a in c])
    decisions = liquidator.decide(view)
    intent = next(decisions)
    assert intent == Send(
        Liquidate(owner, 0, 1), liquidator.params.opening_bid_wei, liquidation_label(owner, 0)
    )
    assert len(model.builder.mempool) == 0
    with pytest.raises(StopIteration):
        decisions.send(None)  # refused: it has nothing else to do
    assert liquidator.sent == 0
    assert model.session.balance(liquidator.address) == int(
        model.scenario.liquidators.eth_budget * ETHER
    )
