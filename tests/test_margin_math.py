"""Margin math on the real contracts against hand-computed values."""

from sim.units import BASE as ONE
from sim.units import USD
from tests.helpers import (
    BTC,
    E8,
    ETH,
    amm_quote,
    notional,
    open_account,
    reserves,
    set_price,
    trader,
    value,
)


def test_long_equity_pnl_and_requirements(liqsim_system):
    s = liqsim_system
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    base, quote = reserves(s, ETH)
    paid = amm_quote(base, quote, ONE)
    s.send(s.trade_call(alice, 0, ETH, ONE))

    pos = s.exchange.functions.getPosition(alice, 0, ETH).call()
    assert pos[0] == ONE and pos[1] == paid
    h = s.health(alice, 0)
    assert h["equity"] == 1_000 * USD + value(ONE, 2_000 * E8) - paid
    assert h["notional"] == 2_000 * USD
    assert h["initial_requirement"] == 100 * USD  # 5% of 2,000
    assert h["maintenance_requirement"] == 60 * USD  # 3% of 2,000
    assert not h["liquidatable"]

    set_price(s, ETH, 1_900)
    h = s.health(alice, 0)
    assert h["equity"] == 1_000 * USD + 1_900 * USD - paid  # PnL = 1,900 - paid
    assert h["maintenance_requirement"] == 57 * USD


def test_short_pnl_sign_and_rounding_against_account(liqsim_system):
    s = liqsim_system
    bob = trader(s, 1)
    open_account(s, bob, 0, "cross", 0, 5_000)
    size = -ONE // 3  # an awkward size: every rounding is exercised
    base, quote = reserves(s, BTC)
    received = amm_quote(base, quote, size)
    assert received < 0
    s.send(s.trade_call(bob, 0, BTC, size))
    set_price(s, BTC, 61_234.56789)
    p = 6_123_456_789_000
    h = s.health(bob, 0)
    # value of a short rounds toward -inf (against the holder), requirements round up
    assert h["equity"] == 5_000 * USD + value(size, p) - received
    assert value(size, p) * 10**20 < size * p  # the short's value was rounded down
    n = notional(size, p)
    assert h["notional"] == n
    assert h["maintenance_requirement"] == -(-n * 30_000 // 10**6)


def test_isolated_liquidation_price_matches_closed_form(liqsim_system):
    s = liqsim_system
    carol = trader(s, 2)
    open_account(s, carol, 0, "isolated", ETH, 400)
    s.send(s.trade_call(carol, 0, ETH, 2 * ONE))  # about 10x
    h = s.health(carol, 0)
    p0 = 2_000 * E8
    size = 2 * ONE
    denom = size * 10**6 - size * 30_000
    expected = p0 + (h["maintenance_requirement"] - h["equity"]) * 10**20 * 10**6 // denom
    got = s.exchange.functions.liquidationPriceE8(carol, 0, ETH).call()
    assert abs(got - expected) <= 1
    # at that price the account is (just) liquidatable, one dollar above it is not
    set_price(s, ETH, (got + 100 * E8) / E8)
    assert not s.health(carol, 0)["liquidatable"]
    set_price(s, ETH, (got - E8 // 100) / E8)
    assert s.health(carol, 0)["liquidatable"]


def test_reduce_realizes_pnl_into_collateral(liqsim_system):
    s = liqsim_system
    dave = trader(s, 3)
    open_account(s, dave, 0, "cross", 0, 1_000)
    b, q = reserves(s, ETH)
    paid = amm_quote(b, q, ONE)
    s.send(s.trade_call(dave, 0, ETH, ONE))
    b, q = reserves(s, ETH)
    got = amm_quote(b, q, -ONE // 2)
    s.send(s.trade_call(dave, 0, ETH, -ONE // 2))
    basis_closed = -(-paid // 2)  # rounded up, against the account
    realized = -got - basis_closed
    acct = s.exchange.functions.getAccount(dave, 0).call()
    assert acct[3] == 1_000 * USD + realized
    pos = s.exchange.functions.getPosition(dave, 0, ETH).call()
    assert pos[0] == ONE // 2 and pos[1] == paid - basis_closed
