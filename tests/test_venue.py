"""The constant-product virtual AMM: invariant, price impact direction and size, slippage bound."""

import pytest

from sim.units import BASE as ONE
from sim.units import USD
from tests.helpers import ETH, amm_quote, open_account, reserves, revert_reason, trader


@pytest.fixture
def funded(liqsim_system):
    s = liqsim_system
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000_000)
    return s, alice


def mark(s):
    return s.venues[ETH].functions.markPriceE8().call()


@pytest.mark.parametrize("size", [ONE, -ONE, 50 * ONE, -50 * ONE, 7, -7])
def test_constant_product_never_shrinks_and_matches_reference(funded, size):
    s, alice = funded
    b0, q0 = reserves(s, ETH)
    expected = amm_quote(b0, q0, size)
    assert s.venues[ETH].functions.quoteSwap(size).call() == expected
    s.send(s.trade_call(alice, 0, ETH, size))
    b1, q1 = reserves(s, ETH)
    assert b1 == b0 - size and q1 == q0 + expected
    # k = x * y never decreases, and grows by less than one quote unit's worth of base
    assert b0 * q0 <= b1 * q1 < b0 * q0 + b1


def test_price_impact_direction_and_size(funded):
    s, alice = funded
    p0 = mark(s)
    b0, _ = reserves(s, ETH)
    size = 100 * ONE  # 0.4% of the base reserve
    s.send(s.trade_call(alice, 0, ETH, size))
    p1 = mark(s)
    assert p1 > p0
    # constant product: p1 / p0 = (b0 / (b0 - dx))^2
    expected = p0 * b0**2 // (b0 - size) ** 2
    assert abs(p1 - expected) <= p0 // 10**9
    s.send(s.trade_call(alice, 0, ETH, -2 * size))
    assert mark(s) < p0


def test_buyer_pays_more_than_mark_seller_gets_less(funded):
    s, _alice = funded
    b, q = reserves(s, ETH)
    p = mark(s)
    buy = amm_quote(b, q, 10 * ONE)
    sell = -amm_quote(b, q, -10 * ONE)
    assert buy > 10 * p // 100 > sell  # 10 ETH at p (e8) in collateral units = 10 * p / 100


def test_slippage_bound(funded):
    s, alice = funded
    b, q = reserves(s, ETH)
    size = 10 * ONE
    avg_e8 = -(-amm_quote(b, q, size) * 10**20 // size)  # average price, rounded up
    assert (
        revert_reason(s, s.trade_call(alice, 0, ETH, size, limit_price_e8=avg_e8 - 1))
        == "SlippageExceeded"
    )
    assert revert_reason(s, s.trade_call(alice, 0, ETH, size, limit_price_e8=avg_e8)) == ""
    b, q = reserves(s, ETH)
    avg_sell = -amm_quote(b, q, -size) * 10**20 // size
    assert (
        revert_reason(s, s.trade_call(alice, 0, ETH, -size, limit_price_e8=avg_sell + 1))
        == "SlippageExceeded"
    )
    assert revert_reason(s, s.trade_call(alice, 0, ETH, -size, limit_price_e8=avg_sell)) == ""
    assert s.token.functions.balanceOf(s.exchange.address).call() > 1_000_000 * USD
