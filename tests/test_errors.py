"""Every custom error of liqsim's contracts is triggered at least once, on the real contracts.

``TRIGGERS`` maps each error name to a function that provokes it; a test checks that the table
covers every custom error in the compiled ABIs, so a new error cannot be added untested.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import encode as abi_encode

from sim.chain.artifacts import load_artifact, load_manifest
from sim.chain.backend import CallReverted
from sim.exchange.client import System, SystemConfig, deploy_system, fixture_markets, revert_name
from sim.units import BASE, PRICE_SCALE, USD
from tests.helpers import (
    ETH,
    capped_book,
    open_account,
    open_book,
    revert_reason,
    set_market,
    set_price,
    trader,
    waterfall_system,
)


def _mock_feed(s: System):
    art = load_artifact("MockPriceFeed")
    address = s.session.deploy(s.deployer, art.bytecode, 1_000_000)
    return s.session.w3.eth.contract(address=address, abi=list(art.abi))


def _add_market_call(s: System, feed: str, params=None):
    params = params or s.config.markets[ETH].params_tuple()
    return s.call(
        s.deployer, s.exchange, "addMarket", feed, s.venues[ETH].address, params, gas=400_000
    )


def t_not_owner_feed(s):
    return revert_reason(
        s, s.call(trader(s, 0), s.feeds[ETH], "setReporter", trader(s, 0), True, gas=100_000)
    )


def t_not_reporter(s):
    return revert_reason(s, s.call(trader(s, 0), s.feeds[ETH], "report", 1, gas=100_000))


def t_invalid_answer(s):
    return revert_reason(s, s.call(s.reporter, s.feeds[ETH], "report", 0, gas=100_000))


def t_unknown_round(s):
    with pytest.raises(CallReverted) as err:
        s.session.call(s.feeds[ETH].address, s.call_data(s.feeds[ETH], "getRoundData", 99))
    return revert_name(err.value.revert_data)


def t_not_exchange(s):
    return revert_reason(s, s.call(trader(s, 0), s.venues[ETH], "swap", BASE, gas=100_000))


def t_insufficient_liquidity(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 10)
    base = s.venues[ETH].functions.baseReserve().call()
    return revert_reason(s, s.trade_call(alice, 0, ETH, base))


def t_zero_trade(s):
    data = s.call_data(s.venues[ETH], "quoteSwap", 0)
    with pytest.raises(CallReverted) as err:
        s.session.call(s.venues[ETH].address, data)
    return revert_name(err.value.revert_data)


def t_invalid_reserves(s):
    art = load_artifact("VirtualAmm")
    data = art.bytecode + abi_encode(["address", "uint256", "uint256"], [s.exchange.address, 0, 1])
    mined = s.session.transact(s.deployer, None, data, 1_000_000, require_success=False)
    return revert_name(mined.revert_data)


def t_not_owner_exchange(s):
    return revert_reason(
        s,
        s.call(
            trader(s, 0),
            s.exchange,
            "addMarket",
            s.feeds[0].address,
            s.venues[0].address,
            s.config.markets[0].params_tuple(),
            gas=400_000,
        ),
    )


def t_unknown_market(s):
    return revert_reason(
        s, s.call(trader(s, 0), s.exchange, "openSubaccount", 0, 2, 7, gas=150_000)
    )


def t_unknown_subaccount(s):
    return revert_reason(s, s.call(trader(s, 0), s.exchange, "deposit", 3, 1, gas=150_000))


def t_subaccount_exists(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 10)
    return revert_reason(s, s.call(alice, s.exchange, "openSubaccount", 0, 1, 0, gas=150_000))


def t_too_many_subaccounts(s):
    alice = trader(s, 0)
    limit = s.exchange.functions.MAX_SUBACCOUNTS().call()
    s.send_batch(
        [s.call(alice, s.exchange, "openSubaccount", i, 1, 0, gas=150_000) for i in range(limit)]
    )
    return revert_reason(s, s.call(alice, s.exchange, "openSubaccount", limit, 1, 0, gas=150_000))


def t_wrong_margin_mode(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "isolated", ETH, 100)
    return revert_reason(
        s, s.trade_call(alice, 0, 1, BASE // 1000)
    )  # BTC in an ETH-isolated account


def t_zero_amount(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 10)
    return revert_reason(s, s.call(alice, s.exchange, "deposit", 0, 0, gas=150_000))


def t_same_subaccount(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 10)
    return revert_reason(s, s.call(alice, s.exchange, "transferCollateral", 0, 0, 1, gas=150_000))


def t_insufficient_collateral(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 10)
    return revert_reason(s, s.call(alice, s.exchange, "withdraw", 0, 11 * USD, gas=250_000))


def t_insufficient_margin(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 90)
    return revert_reason(s, s.trade_call(alice, 0, ETH, BASE))  # 2,000 notional needs 100


def t_account_healthy(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    s.send(s.trade_call(alice, 0, ETH, BASE))
    return revert_reason(s, s.liquidate_call(trader(s, 1), alice, 0))


def t_slippage_exceeded(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    return revert_reason(s, s.trade_call(alice, 0, ETH, BASE, limit_price_e8=2_000 * PRICE_SCALE))


def t_stale_price(s):
    params = list(s.config.markets[ETH].params_tuple())
    params[4] = 60  # max oracle age 60 s
    s.send(s.call(s.deployer, s.exchange, "setMarketParams", ETH, tuple(params), gas=400_000))
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    for _ in range(6):  # 6 blocks of 12 s
        s.session.mine([])
    return revert_reason(s, s.trade_call(alice, 0, ETH, BASE // 10))


def t_invalid_oracle_price(s):
    feed = _mock_feed(s)
    s.send(s.call(s.deployer, feed, "set", 0, 1, gas=100_000))
    s.send(_add_market_call(s, feed.address))
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    return revert_reason(s, s.trade_call(alice, 0, 2, BASE // 10))


def t_invalid_market_params(s):
    bad = list(s.config.markets[ETH].params_tuple())
    bad[1] = bad[0]  # maintenance == initial
    return revert_reason(s, _add_market_call(s, s.feeds[ETH].address, tuple(bad)))


def t_too_many_markets(s):
    limit = s.exchange.functions.MAX_MARKETS().call()
    n = s.exchange.functions.marketCount().call()
    s.send_batch([_add_market_call(s, s.feeds[ETH].address) for _ in range(limit - n)])
    return revert_reason(s, _add_market_call(s, s.feeds[ETH].address))


def t_length_mismatch(s):
    data = s.call_data(s.exchange, "healthOf", [trader(s, 0)], [])
    with pytest.raises(CallReverted) as err:
        s.session.call(s.exchange.address, data)
    return revert_name(err.value.revert_data)


def t_not_owner_risk_config(s):
    return revert_reason(
        s, s.call(trader(s, 0), s.exchange, "setRiskConfig", (666_667, True), gas=400_000)
    )


def t_invalid_risk_config(s):
    return revert_reason(s, s.risk_config_call(1_000_001, False))


def t_foreign_venue(s):
    return revert_reason(
        s,
        s.call(
            s.deployer,
            s.exchange,
            "addMarket",
            s.feeds[ETH].address,
            trader(s, 0),  # not a venue of this exchange
            s.config.markets[ETH].params_tuple(),
            gas=400_000,
        ),
    )


def t_counterparty_fund_exhausted(s):
    small = waterfall_system(counterparty_usd=10, session=s.session)
    alice = trader(small, 0)
    open_account(small, alice, 0, "cross", 0, 1_000)
    small.send(small.trade_call(alice, 0, ETH, BASE))
    set_market(small, ETH, 2_200)  # ~ +200 USD to realize; the fund holds 10
    return revert_reason(small, small.trade_call(alice, 0, ETH, -BASE))


def t_backstop_disabled(s):
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    s.send(s.trade_call(alice, 0, ETH, BASE))
    return revert_reason(s, s.backstop_call(trader(s, 1), alice, 0))


def t_above_backstop_threshold(s):
    w = waterfall_system(backstop_ppm=666_667, session=s.session)
    open_book(w, [(0, "isolated", 1_000, BASE)])
    return revert_reason(w, w.backstop_call(trader(w, 9), trader(w, 0), 0))


def t_nothing_to_liquidate(s):
    w = waterfall_system(backstop_ppm=666_667, session=s.session)
    open_account(w, trader(w, 0), 0, "cross", 0, 1_000)
    return revert_reason(w, w.backstop_call(trader(w, 9), trader(w, 0), 0))


def t_protected_account(s):
    return revert_reason(s, s.liquidate_call(trader(s, 0), s.exchange.address, 0))


def t_deleverage_required(s):
    w = waterfall_system(adl=True, insurance_usd=10, session=s.session)
    open_book(w, [(0, "isolated", 1_100, 10 * BASE)])
    set_market(w, ETH, 1_700)  # closing 10 ETH there leaves ~ -1,900 USD; the fund holds 10
    return revert_reason(w, w.liquidate_call(trader(w, 9), trader(w, 0), 0))


def t_adl_disabled(s):
    return revert_reason(s, s.deleverage_call(trader(s, 1), trader(s, 0), 0))


def t_insurance_can_cover(s):
    w = waterfall_system(adl=True, session=s.session)
    open_book(w, [(0, "isolated", 1_100, 10 * BASE)])
    set_price(w, ETH, 1_700)
    return revert_reason(w, w.deleverage_call(trader(w, 9), trader(w, 0), 0))


def t_liquidator_margin_short(s):
    """A takeover into a subaccount whose capital cannot carry the positions at initial margin."""
    alice, liq = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 1_100)
    s.send(s.trade_call(alice, 0, ETH, 10 * BASE))
    open_account(s, liq, 0, "cross", ETH, 500)  # 10 ETH at 1,900 needs 950 USD
    set_market(s, ETH, 1_900)
    return revert_reason(s, s.takeover_call(liq, alice, 0, 0, 1))


def t_adl_broke_invariant(s):
    # The same book as tests/test_waterfall.py's capped case, on an exchange without the ADL cap:
    # the fill takes the counterparty's whole short and the assertion fires.
    w = waterfall_system(
        adl=True, insurance_usd=10, artifact="MarginExchangeUncapped", session=s.session
    )
    capped_book(w)
    return revert_reason(w, w.deleverage_call(trader(w, 9), trader(w, 0), 0))


TRIGGERS = {
    "NotOwner": [t_not_owner_feed, t_not_owner_exchange, t_not_owner_risk_config],
    "NotReporter": [t_not_reporter],
    "InvalidAnswer": [t_invalid_answer],
    "UnknownRound": [t_unknown_round],
    "NotExchange": [t_not_exchange],
    "InsufficientLiquidity": [t_insufficient_liquidity],
    "ZeroTrade": [t_zero_trade],
    "InvalidReserves": [t_invalid_reserves],
    "UnknownMarket": [t_unknown_market],
    "UnknownSubaccount": [t_unknown_subaccount],
    "SubaccountExists": [t_subaccount_exists],
    "TooManySubaccounts": [t_too_many_subaccounts],
    "WrongMarginMode": [t_wrong_margin_mode],
    "ZeroAmount": [t_zero_amount],
    "SameSubaccount": [t_same_subaccount],
    "InsufficientCollateral": [t_insufficient_collateral],
    "InsufficientMargin": [t_insufficient_margin],
    "AccountHealthy": [t_account_healthy],
    "SlippageExceeded": [t_slippage_exceeded],
    "StalePrice": [t_stale_price],
    "InvalidOraclePrice": [t_invalid_oracle_price],
    "InvalidMarketParams": [t_invalid_market_params],
    "TooManyMarkets": [t_too_many_markets],
    "LengthMismatch": [t_length_mismatch],
    "InvalidRiskConfig": [t_invalid_risk_config],
    "ForeignVenue": [t_foreign_venue],
    "CounterpartyFundExhausted": [t_counterparty_fund_exhausted],
    "BackstopDisabled": [t_backstop_disabled],
    "AboveBackstopThreshold": [t_above_backstop_threshold],
    "NothingToLiquidate": [t_nothing_to_liquidate],
    "ProtectedAccount": [t_protected_account],
    "DeleverageRequired": [t_deleverage_required],
    "AdlDisabled": [t_adl_disabled],
    "InsuranceCanCover": [t_insurance_can_cover],
    "AdlBrokeInvariant": [t_adl_broke_invariant],
    "LiquidatorMarginShort": [t_liquidator_margin_short],
}

CASES = [(name, fn) for name, fns in TRIGGERS.items() for fn in fns]

# Errors that come from OpenZeppelin's code rather than liqsim's own contracts.
THIRD_PARTY = {"OwnableUnauthorizedAccount", "OwnableInvalidOwner", "SafeERC20FailedOperation"}


def test_every_custom_error_has_a_trigger():
    ours = set()
    for name in load_manifest()["contracts"]:
        for entry in load_artifact(name).abi:
            if entry["type"] == "error" and not entry["name"].startswith("ERC20"):
                ours.add(entry["name"])
    assert ours - THIRD_PARTY == set(TRIGGERS)


@pytest.mark.parametrize(("expected", "trigger"), CASES, ids=[fn.__name__ for _, fn in CASES])
def test_error_is_raised(liqsim_system, expected, trigger):
    assert trigger(liqsim_system) == expected


def test_oracle_price_freshness_is_enforced_only_where_configured(liqsim_system):
    # The default markets have max oracle age 0: the price's age is never checked.
    s = liqsim_system
    assert [m.max_oracle_age_s for m in s.config.markets] == [0, 0]
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    for _ in range(50):  # 600 s without a report
        s.session.mine([])
    assert revert_reason(s, s.trade_call(alice, 0, ETH, BASE // 10)) == ""
    assert s.exchange.functions.getPosition(alice, 0, ETH).call()[0] == BASE // 10

    # A second exchange on the same chain whose ETH market accepts prices up to 60 s old (BTC
    # keeps 0). Once ETH's price is older than that (block.timestamp > updatedAt + 60), calls
    # that need it revert with StalePrice, until a fresh report.
    eth, btc = fixture_markets()
    guarded = deploy_system(
        s.session, SystemConfig(markets=(replace(eth, max_oracle_age_s=60), btc))
    )
    open_account(guarded, alice, 0, "cross", 0, 1_000)
    open_account(guarded, alice, 1, "cross", 0, 1_000)  # will trade BTC only
    set_price(guarded, ETH, 2_000)  # block time T (blocks are 12 s apart)
    trade_eth = guarded.trade_call(alice, 0, ETH, BASE // 10)
    for _ in range(4):  # T+12 .. T+48
        guarded.session.mine([])
    assert revert_reason(guarded, trade_eth) == ""  # T+60: exactly the maximum age
    assert revert_reason(guarded, trade_eth) == "StalePrice"  # T+72
    withdraw = guarded.call(alice, guarded.exchange, "withdraw", 0, 1 * USD, gas=250_000)
    assert revert_reason(guarded, withdraw) == "StalePrice"  # its health check needs ETH's price
    assert revert_reason(guarded, guarded.trade_call(alice, 1, 1, BASE // 1000)) == ""  # BTC
    set_price(guarded, ETH, 2_000)  # a fresh report
    assert revert_reason(guarded, trade_eth) == ""
    assert guarded.exchange.functions.getPosition(alice, 0, ETH).call()[0] == 2 * (BASE // 10)
