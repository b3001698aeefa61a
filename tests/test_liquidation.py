"""Liquidation on the real contracts: penalty split, insurance fund, bad debt, cross vs isolated."""

import pytest

from sim.chain.events import EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.client import SystemConfig, deploy_system
from sim.units import BASE as ONE
from sim.units import USD
from tests.helpers import (
    BTC,
    ETH,
    amm_quote,
    open_account,
    reserves,
    revert_reason,
    set_market,
    trader,
)


def _fund(s):
    f = s.exchange.functions
    return f.insuranceFund().call(), f.totalBadDebt().call(), f.counterpartyFund().call()


def _events(mined, name):
    dec = EventDecoder()
    return [e for e in dec.decode_all(mined.logs) if e.name == name]


def test_healthy_account_cannot_be_liquidated(liqsim_system):
    s = liqsim_system
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "cross", 0, 1_000)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    assert revert_reason(s, s.liquidate_call(bot, alice, 0)) == "AccountHealthy"


def test_penalty_split_between_liquidator_and_insurance(liqsim_system):
    s = liqsim_system
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 250)
    s.send(s.trade_call(alice, 0, ETH, ONE))  # 2,000 notional, 8x
    set_market(s, ETH, 1_800)  # equity ~ 50 < MM 54
    h = s.health(alice, 0)
    assert h["liquidatable"] and h["equity"] > 0
    collateral = s.exchange.functions.getAccount(alice, 0).call()[3]
    basis = s.exchange.functions.getPosition(alice, 0, ETH).call()[1]
    b, q = reserves(s, ETH)
    proceeds = -amm_quote(b, q, -ONE)
    equity_after_close = collateral + proceeds - basis
    penalty = -(-proceeds * 15_000 // 10**6)  # 1.5% of notional closed, rounded up
    reward = penalty * 500_000 // 10**6
    ins0, bad0, _ = _fund(s)
    bal0 = s.token.functions.balanceOf(bot).call()

    mined = s.send(s.liquidate_call(bot, alice, 0))

    assert equity_after_close > penalty  # the full penalty is paid from equity
    assert s.token.functions.balanceOf(bot).call() - bal0 == reward
    ins1, bad1, _ = _fund(s)
    assert ins1 - ins0 == penalty - reward
    assert bad1 == bad0
    assert s.exchange.functions.getAccount(alice, 0).call()[3] == equity_after_close - penalty
    assert s.exchange.functions.getPosition(alice, 0, ETH).call()[0] == 0
    (liq,) = _events(mined, "Liquidated")
    assert liq.args["liquidatorReward"] == reward and liq.args["penaltyPaid"] == penalty
    assert liq.args["notionalClosed"] == proceeds
    assert liq.args["isPartial"] is False  # the default close factor is 100%
    (pl,) = _events(mined, "PositionLiquidated")
    assert (pl.args["sizeClosed"], pl.args["newSize"], pl.args["newOpenNotional"]) == (-ONE, 0, 0)
    assert pl.args["realizedPnl"] == proceeds - basis


def test_insurance_fund_covers_negative_equity(liqsim_system):
    s = liqsim_system
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 200)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    set_market(s, ETH, 1_500)  # loss ~500 on 200 collateral
    collateral = s.exchange.functions.getAccount(alice, 0).call()[3]
    basis = s.exchange.functions.getPosition(alice, 0, ETH).call()[1]
    b, q = reserves(s, ETH)
    proceeds = -amm_quote(b, q, -ONE)
    deficit = -(collateral + proceeds - basis)
    assert deficit > 0
    ins0, bad0, _ = _fund(s)
    bal0 = s.token.functions.balanceOf(bot).call()
    mined = s.send(s.liquidate_call(bot, alice, 0))
    ins1, bad1, _ = _fund(s)
    assert ins0 - ins1 == deficit
    assert bad1 == bad0 == 0
    assert s.token.functions.balanceOf(bot).call() == bal0  # nothing left to pay a reward
    assert s.exchange.functions.getAccount(alice, 0).call()[3] == 0
    (liq,) = _events(mined, "Liquidated")
    assert liq.args["insuranceCover"] == deficit and liq.args["badDebt"] == 0


def test_bad_debt_recorded_when_insurance_fund_is_short():
    session = ChainSession(seed=0, n_accounts=24)
    s = deploy_system(session, SystemConfig(insurance_fund_units=50 * USD))
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 200)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    set_market(s, ETH, 1_500)
    collateral = s.exchange.functions.getAccount(alice, 0).call()[3]
    basis = s.exchange.functions.getPosition(alice, 0, ETH).call()[1]
    b, q = reserves(s, ETH)
    realized = -amm_quote(b, q, -ONE) - basis
    deficit = -(collateral + realized)
    _, _, cp0 = _fund(s)
    mined = s.send(s.liquidate_call(bot, alice, 0))
    ins1, bad1, cp1 = _fund(s)
    assert ins1 == 0
    assert bad1 == deficit - 50 * USD
    (rec,) = _events(mined, "BadDebtRecorded")
    assert rec.args["amount"] == bad1 and rec.args["totalBadDebt"] == bad1
    # bad debt is socialized to the counterparty fund, so every token stays accounted for
    f = s.exchange.functions
    assert s.token.functions.balanceOf(s.exchange.address).call() == (
        f.totalCollateral().call() + f.insuranceFund().call() + f.counterpartyFund().call()
    )
    # the counterparty received the realized loss and paid the uncovered part back as bad debt
    assert cp1 - cp0 == -realized - bad1


@pytest.mark.parametrize("drop_to", [1_700.0, 1_650.0])
def test_cross_contagion_isolated_survives(liqsim_system, drop_to):
    """Same exposure in two markets: a crash in ETH liquidates the CROSS account's BTC position
    too, while the ISOLATED BTC position survives."""
    s = liqsim_system
    crossy, iso, bot = trader(s, 0), trader(s, 1), trader(s, 9)
    eth_size, btc_size = 5 * ONE, ONE // 6  # 10,000 USD notional each
    open_account(s, crossy, 0, "cross", 0, 2_000)
    s.send_batch([s.trade_call(crossy, 0, ETH, eth_size), s.trade_call(crossy, 0, BTC, btc_size)])
    open_account(s, iso, 0, "isolated", ETH, 1_000)
    open_account(s, iso, 1, "isolated", BTC, 1_000)
    s.send_batch([s.trade_call(iso, 0, ETH, eth_size), s.trade_call(iso, 1, BTC, btc_size)])
    assert not s.health(crossy, 0)["liquidatable"]

    set_market(s, ETH, drop_to)  # BTC unchanged
    assert s.health(crossy, 0)["liquidatable"]
    assert s.health(iso, 0)["liquidatable"]
    assert not s.health(iso, 1)["liquidatable"]
    assert revert_reason(s, s.liquidate_call(bot, iso, 1)) == "AccountHealthy"

    mined = s.send(s.liquidate_call(bot, crossy, 0, n_markets=2))
    closed = {e.args["market"] for e in _events(mined, "PositionLiquidated")}
    assert closed == {ETH, BTC}  # contagion: BTC closed because of ETH losses
    s.send(s.liquidate_call(bot, iso, 0))
    assert s.exchange.functions.getPosition(crossy, 0, BTC).call()[0] == 0
    assert s.exchange.functions.getPosition(iso, 1, BTC).call()[0] == btc_size
    assert s.exchange.functions.getPosition(iso, 0, ETH).call()[0] == 0
