"""The liquidation waterfall on the real contracts: partial liquidation, backstop takeover,
insurance fund, auto-deleveraging (ADL) and socialized loss, each step switched on by parameters.

Expected values are computed with exact Python references of the contracts' arithmetic
(tests/helpers.py), so every amount is checked to the unit.
"""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from sim.chain.events import EventDecoder
from sim.exchange.client import System
from sim.units import BASE as ONE
from sim.units import USD
from tests.helpers import (
    BTC,
    E8,
    ETH,
    PPM,
    amm_quote,
    apply_fill,
    assert_conserved,
    capped_book,
    ceil_div,
    collateral,
    funds,
    liquidation_size,
    mul_div_ceil_signed,
    mul_div_floor,
    notional,
    open_account,
    open_book,
    open_interest_matches_venue,
    position,
    reserves,
    revert_reason,
    set_market,
    set_price,
    trader,
    value,
    waterfall_system,
)

TWO_THIRDS_PPM = 666_667  # Hyperliquid: backstop below 2/3 of maintenance
SLICE_PPM = 200_000  # Hyperliquid: 20% slices ...
FULL_CLOSE_USD = 100_000  # ... of positions above 100,000 USDC
MM_PPM = 30_000
PENALTY_PPM = 15_000
SHARE_PPM = 500_000
ADL_SLACK = 4


def _events(mined, *names):
    return [e for e in EventDecoder().decode_all(mined.logs) if e.name in names]


def _key(owner: str, sub: int) -> int:
    return int.from_bytes(keccak(abi_encode(["address", "uint32"], [owner, sub])), "big")


def _equity(coll: int, size: int, basis: int, price_e8: int) -> int:
    return coll + value(size, price_e8) - basis


def _mm(size: int, price_e8: int) -> int:
    return ceil_div(notional(size, price_e8) * MM_PPM, PPM)


def _vault(s: System) -> tuple[str, int]:
    return tuple(s.exchange.functions.backstopVault().call())


# ------------------------------------------------------------------ defaults


def test_default_system_has_every_waterfall_step_off(liqsim_system):
    s = liqsim_system
    f = s.exchange.functions
    assert tuple(f.riskConfig().call()) == (0, False)
    for m in (ETH, BTC):
        params = f.getMarket(m).call()[2]
        assert params[8:10] == (0, 0)  # partialCloseFactorPpm, fullCloseNotional
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 12_000)
    s.send(s.trade_call(alice, 0, ETH, 100 * ONE))  # 200,000 USD: would be sliced if switched on
    set_market(s, ETH, 1_900)
    assert revert_reason(s, s.backstop_call(bot, alice, 0)) == "BackstopDisabled"
    assert revert_reason(s, s.deleverage_call(bot, alice, 0)) == "AdlDisabled"
    (liq,) = _events(s.send(s.liquidate_call(bot, alice, 0)), "Liquidated")
    assert position(s, alice, 0, ETH)[0] == 0 and liq.args["isPartial"] is False


def test_risk_config_is_set_at_deployment_only_when_a_step_is_on():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM, adl=True)
    assert tuple(s.exchange.functions.riskConfig().call()) == (TWO_THIRDS_PPM, True)
    assert revert_reason(s, s.risk_config_call(0, False)) == ""
    assert tuple(s.exchange.functions.riskConfig().call()) == (0, False)


# --------------------------------------------------------- partial liquidation


def _expected_liquidation(s, owner, sub, market, price_e8, factor, full_close_units):
    """One market's liquidation, computed from the chain state before it."""
    size, basis = position(s, owner, sub, market)
    close = liquidation_size(size, price_e8, factor, full_close_units)
    b, q = reserves(s, market)
    quote = amm_quote(b, q, -close)
    new_size, new_basis, realized = apply_fill(size, basis, -close, quote)
    if new_size == 0:
        realized, new_basis = -quote - basis, 0
    penalty = ceil_div(abs(quote) * PENALTY_PPM, PPM)
    return close, quote, realized, new_size, new_basis, penalty


def test_partial_liquidation_slices_a_large_isolated_position_until_it_is_small():
    s = waterfall_system(eth_partial=(SLICE_PPM, FULL_CLOSE_USD))
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 12_000)
    s.send(s.trade_call(alice, 0, ETH, 100 * ONE))  # 200,000 USD at 2,000
    set_market(s, ETH, 1_900)
    price = 1_900 * E8
    closes = []
    while s.health(alice, 0)["liquidatable"]:
        coll = collateral(s, alice, 0)
        close, quote, realized, new_size, new_basis, penalty = _expected_liquidation(
            s, alice, 0, ETH, price, SLICE_PPM, FULL_CLOSE_USD * USD
        )
        equity_after = coll + realized + value(new_size, price) - new_basis
        paid = min(penalty, max(equity_after, 0))
        reward = (penalty * SHARE_PPM // PPM) * paid // penalty
        ins0 = funds(s)["insurance"]
        mined = s.send(s.liquidate_call(bot, alice, 0))

        (pl,) = _events(mined, "PositionLiquidated")
        assert (pl.args["sizeClosed"], pl.args["quoteDelta"], pl.args["realizedPnl"]) == (
            -close,
            quote,
            realized,
        )
        assert (pl.args["newSize"], pl.args["newOpenNotional"]) == (new_size, new_basis)
        (liq,) = _events(mined, "Liquidated")
        assert liq.args["isPartial"] is (new_size != 0)
        assert liq.args["notionalClosed"] == abs(quote)  # the penalty is on what was closed
        assert (liq.args["penaltyPaid"], liq.args["liquidatorReward"]) == (paid, reward)
        assert position(s, alice, 0, ETH) == (new_size, new_basis)
        cover = -min(equity_after, 0) if new_size == 0 else 0
        assert liq.args["insuranceCover"] == cover
        assert collateral(s, alice, 0) == coll + realized - paid + cover
        assert funds(s)["insurance"] - ins0 == paid - reward - cover
        assert_conserved(s)
        closes.append(close)
    # 20% slices while the notional at the margin price is above 100,000 USD, then the rest
    assert closes == [20 * ONE, 16 * ONE, 12_800 * ONE // 1_000, 51_200 * ONE // 1_000]
    assert position(s, alice, 0, ETH)[0] == 0
    assert s.exchange.functions.getAccount(alice, 0).call()[2] == 0  # market mask


def test_partial_liquidation_of_a_cross_account_closes_small_positions_in_full():
    s = waterfall_system(
        eth_partial=(SLICE_PPM, FULL_CLOSE_USD), btc_partial=(SLICE_PPM, FULL_CLOSE_USD)
    )
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "cross", 0, 13_000)
    s.send_batch([s.trade_call(alice, 0, ETH, 100 * ONE), s.trade_call(alice, 0, BTC, ONE // 2)])
    set_market(s, ETH, 1_900)  # BTC (30,000 USD: below the full-close notional) unchanged
    assert s.health(alice, 0)["liquidatable"]
    eth = _expected_liquidation(s, alice, 0, ETH, 1_900 * E8, SLICE_PPM, FULL_CLOSE_USD * USD)
    btc = _expected_liquidation(s, alice, 0, BTC, 60_000 * E8, SLICE_PPM, FULL_CLOSE_USD * USD)
    mined = s.send(s.liquidate_call(bot, alice, 0, n_markets=2))
    closes = {e.args["market"]: e.args for e in _events(mined, "PositionLiquidated")}
    assert closes[ETH]["sizeClosed"] == -20 * ONE and closes[ETH]["newSize"] == 80 * ONE
    assert closes[BTC]["sizeClosed"] == -(ONE // 2) and closes[BTC]["newSize"] == 0
    assert (eth[0], btc[0]) == (20 * ONE, ONE // 2)
    (liq,) = _events(mined, "Liquidated")
    assert liq.args["isPartial"] is True
    assert liq.args["notionalClosed"] == abs(eth[1]) + abs(btc[1])
    assert liq.args["penaltyPaid"] == eth[5] + btc[5]  # equity left pays both penalties
    assert s.exchange.functions.getAccount(alice, 0).call()[2] == 1 << ETH  # BTC bit cleared
    assert position(s, alice, 0, BTC) == (0, 0)


def test_close_factor_of_100_percent_closes_in_full():
    s = waterfall_system(eth_partial=(PPM, 0))
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 12_000)
    s.send(s.trade_call(alice, 0, ETH, 100 * ONE))
    set_market(s, ETH, 1_900)
    (liq,) = _events(s.send(s.liquidate_call(bot, alice, 0)), "Liquidated")
    assert liq.args["isPartial"] is False and position(s, alice, 0, ETH)[0] == 0


# ------------------------------------------------------------------- backstop


def test_backstop_threshold_boundary_is_exact():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM)
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 300)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    coll = collateral(s, alice, 0)
    size, basis = position(s, alice, 0, ETH)

    def below(p: int) -> bool:  # equity < threshold x maintenance, exactly as the contract
        return _equity(coll, size, basis, p) * PPM < TWO_THIRDS_PPM * _mm(size, p)

    lo, hi = 1_000 * E8, 2_000 * E8  # below(lo) and not below(hi)
    assert below(lo) and not below(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    s.send(s.report_call(ETH, hi))  # the lowest price at or above the threshold
    assert s.health(alice, 0)["liquidatable"]  # below maintenance, but not below 2/3 of it
    assert revert_reason(s, s.backstop_call(bot, alice, 0)) == "AboveBackstopThreshold"
    s.send(s.report_call(ETH, lo))  # one 1e-8 USD lower
    assert revert_reason(s, s.backstop_call(bot, alice, 0)) == ""
    assert position(s, alice, 0, ETH)[0] == 0


def test_backstop_moves_positions_and_margin_to_the_vault_at_the_margin_price():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM)
    alice, bot = trader(s, 0), trader(s, 9)
    eth_size, btc_size = 5 * ONE, -(ONE // 6)
    open_account(s, alice, 0, "cross", 0, 1_200)
    s.send_batch([s.trade_call(alice, 0, ETH, eth_size), s.trade_call(alice, 0, BTC, btc_size)])
    set_price(s, ETH, 1_830)  # oracle only: the venues are not traded
    h = s.health(alice, 0)
    assert h["equity"] > 0 and h["equity"] * PPM < TWO_THIRDS_PPM * h["maintenance_requirement"]
    prices = {ETH: 1_830 * E8, BTC: 60_000 * E8}
    before = {m: position(s, alice, 0, m) for m in (ETH, BTC)}
    venues = {m: reserves(s, m) for m in (ETH, BTC)}
    f0 = funds(s)
    coll0 = collateral(s, alice, 0)

    mined = s.send(s.backstop_call(bot, alice, 0, n_markets=2))

    vault = _vault(s)
    assert vault == (s.exchange.address, 0)
    assert {m: reserves(s, m) for m in (ETH, BTC)} == venues  # no venue trade, no price impact
    takeovers = {e.args["market"]: e.args for e in _events(mined, "BackstopTakeover")}
    realized = 0
    for m, (size, basis) in before.items():
        quote = value(size, prices[m])  # rounded down: against the account
        assert (takeovers[m]["size"], takeovers[m]["priceE8"], takeovers[m]["quote"]) == (
            size,
            prices[m],
            quote,
        )
        assert position(s, *vault, m) == (size, quote)  # same size, cost basis = the same quote
        assert position(s, alice, 0, m) == (0, 0)
        realized += quote - basis
    equity = coll0 + realized
    assert equity == h["equity"]
    (bl,) = _events(mined, "BackstopLiquidated")
    assert (bl.args["equity"], bl.args["marginToVault"], bl.args["insuranceCover"]) == (
        equity,
        equity,
        0,
    )
    assert bl.args["caller"] == bot and bl.args["badDebt"] == 0
    (opened,) = _events(mined, "SubaccountOpened")  # the vault opens on first use
    assert (opened.args["owner"], opened.args["subaccount"], opened.args["mode"]) == (*vault, 1)
    assert collateral(s, alice, 0) == 0
    assert collateral(s, *vault) == equity  # positions and margin are transferred
    assert funds(s)["insurance"] == f0["insurance"] and funds(s)["bad_debt"] == 0
    assert_conserved(s)
    for m in (ETH, BTC):
        total, sold = open_interest_matches_venue(s, m)
        assert total == sold
    # the vault is protected
    for call in (
        s.liquidate_call(bot, *vault),
        s.backstop_call(bot, *vault),
        s.deleverage_call(bot, *vault),
    ):
        assert revert_reason(s, call) == "ProtectedAccount"


def test_backstop_insurance_covers_a_deficit_then_bad_debt_when_it_is_short():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM, insurance_usd=150)
    alice, bob, bot = trader(s, 0), trader(s, 1), trader(s, 9)
    for who in (alice, bob):
        open_account(s, who, 0, "isolated", ETH, 300)
        s.send(s.trade_call(who, 0, ETH, ONE))
    set_price(s, ETH, 1_600)  # each ~ -100 USD at the margin price
    deficits = []
    for who in (alice, bob):
        coll = collateral(s, who, 0)
        size, basis = position(s, who, 0, ETH)
        deficits.append(-_equity(coll, size, basis, 1_600 * E8))
    assert all(d > 0 for d in deficits) and deficits[0] < 150 * USD < sum(deficits)
    f0 = funds(s)

    (bl,) = _events(s.send(s.backstop_call(bot, alice, 0)), "BackstopLiquidated")
    assert (bl.args["equity"], bl.args["insuranceCover"], bl.args["badDebt"]) == (
        -deficits[0],
        deficits[0],
        0,
    )
    assert funds(s)["insurance"] == f0["insurance"] - deficits[0]

    mined = s.send(s.backstop_call(bot, bob, 0))
    (bl,) = _events(mined, "BackstopLiquidated")
    cover = 150 * USD - deficits[0]
    bad = deficits[1] - cover
    assert (bl.args["insuranceCover"], bl.args["badDebt"]) == (cover, bad)
    (rec,) = _events(mined, "BadDebtRecorded")
    assert rec.args["amount"] == bad == funds(s)["bad_debt"]
    assert funds(s)["insurance"] == 0
    assert collateral(s, alice, 0) == collateral(s, bob, 0) == 0
    vault = _vault(s)
    assert position(s, *vault, ETH)[0] == 2 * ONE and collateral(s, *vault) == 0
    assert_conserved(s)


def test_the_vault_nets_opposite_takeovers_and_realizes_the_difference():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM)
    alice, bob, bot = trader(s, 0), trader(s, 1), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 300)
    open_account(s, bob, 0, "isolated", ETH, 300)
    s.send_batch([s.trade_call(alice, 0, ETH, ONE), s.trade_call(bob, 0, ETH, -ONE)])
    set_price(s, ETH, 1_600)
    s.send(s.backstop_call(bot, alice, 0))  # the vault is long 1 ETH at 1,600
    vault = _vault(s)
    assert position(s, *vault, ETH) == (ONE, value(ONE, 1_600 * E8))
    set_price(s, ETH, 2_400)
    s.send(s.backstop_call(bot, bob, 0))  # ... and buys bob's short at 2,400: flat, +800 realized
    assert position(s, *vault, ETH) == (0, 0)
    assert s.exchange.functions.getAccount(*vault).call()[2] == 0
    assert collateral(s, *vault) == 800 * USD
    assert_conserved(s)


def test_backstop_defers_to_adl_when_the_insurance_fund_cannot_cover():
    s = waterfall_system(backstop_ppm=TWO_THIRDS_PPM, adl=True, insurance_usd=50)
    alice, bot = trader(s, 0), trader(s, 9)
    open_account(s, alice, 0, "isolated", ETH, 300)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    set_price(s, ETH, 1_600)  # ~ -100 USD, the fund holds 50
    assert revert_reason(s, s.backstop_call(bot, alice, 0)) == "DeleverageRequired"
    mined = s.try_send(s.backstop_call(bot, alice, 0))
    err = s.exchange.w3.codec.decode(["int256", "uint256"], bytes(mined.revert_data)[4:])
    assert err[0] == s.health(alice, 0)["equity"] and err[1] == 50 * USD


# ------------------------------------------------------------ auto-deleveraging


def _holders(s: System, market: int) -> list[tuple[str, int]]:
    f = s.exchange.functions
    return [tuple(f.holderAt(market, i).call()) for i in range(f.holderCount(market).call())]


def _adl_cap(headroom: int, extra: int, abs_size: int, price_e8: int) -> int | None:
    """MarginExchange._adlCap (None: no cap)."""
    if headroom <= ADL_SLACK:
        return 0
    denom = extra * 10**26 - abs_size * price_e8 * MM_PPM
    if denom <= 0:
        return None
    return (headroom - ADL_SLACK) * abs_size * 10**26 // denom


def _expected_deleverage(s: System, owner: str, sub: int, market: int, price_e8: int) -> dict:
    """Replica of `deleverage` for an account with one position (no funding): the ranked
    counterparties, every fill, the venue close of the rest and the account's end."""
    h = s.health(owner, sub)
    size, basis = position(s, owner, sub, market)
    coll = collateral(s, owner, sub)
    val = value(size, price_e8)
    target = val + mul_div_floor(-h["equity"], notional(size, price_e8), h["notional"])
    if (size > 0 and target < 0) or (size < 0 and target > 0):
        target = 0
    extra = target - val
    vault = _vault(s)
    cands = []
    for o, sb in _holders(s, market):
        if (o, sb) in ((owner, sub), vault):
            continue
        c, cb = position(s, o, sb, market)
        if c == 0 or (c > 0) == (size > 0) or value(c, price_e8) - cb <= 0:
            continue
        hc = s.health(o, sb)
        if hc["equity"] <= hc["maintenance_requirement"] + ADL_SLACK:
            continue
        n, entry, eq = notional(c, price_e8), max(abs(cb), 1), hc["equity"]
        score = n * n * 10**18 // (entry * eq) if c > 0 else entry * 10**18 // eq
        cands.append((score, _key(o, sb), o, sb, eq - hc["maintenance_requirement"], c, cb))
    cands.sort(key=lambda c: (-c[0], c[1]))
    fills, realized, deleveraged = [], 0, 0
    rest_size, rest_basis = size, basis
    for _score, _k, o, sb, headroom, c, cb in cands:
        if rest_size == 0:
            break
        f = min(abs(rest_size), abs(c))
        cap = _adl_cap(headroom, extra, abs(size), price_e8)
        if cap is not None:
            f = min(f, cap)
        if f == 0:
            continue
        delta = f if size > 0 else -f  # the counterparty's trade
        quote = mul_div_ceil_signed(target, f, abs(size))
        c_size, c_basis, c_realized = apply_fill(c, cb, delta, quote)
        rest_size, rest_basis, r = apply_fill(rest_size, rest_basis, -delta, -quote)
        realized += r
        deleveraged += abs(quote)
        fills.append(
            {
                "owner": o,
                "sub": sb,
                "size": -delta,
                "quote": -quote,
                "cp_position": (c_size, c_basis),
                "cp_realized": c_realized,
            }
        )
    venue = None
    if rest_size != 0:
        b, q = reserves(s, market)
        vq = amm_quote(b, q, -rest_size)
        _, _, r = apply_fill(rest_size, rest_basis, -rest_size, vq)
        realized += r
        venue = {"size": -rest_size, "quote": vq, "realized": r}
    return {
        "target": target,
        "fills": fills,
        "venue": venue,
        "end": coll + realized,
        "deleveraged": deleveraged,
        "order": [(c[2], c[3]) for c in cands],
    }


def test_adl_ranks_profitable_opposite_positions_and_closes_at_the_bankruptcy_price():
    s = waterfall_system(adl=True, insurance_usd=10)
    bankrupt, bot = trader(s, 0), trader(s, 9)
    open_book(
        s,
        [
            (0, "isolated", 1_100, 10 * ONE),  # the account that goes bankrupt
            (1, "isolated", 600, -3 * ONE),  # high leverage: ranked first
            (2, "isolated", 3_000, -3 * ONE),
            (3, "cross", 20_000, -3 * ONE),  # low leverage: ranked last
            (4, "isolated", 500, ONE),  # same side as the bankrupt account: never a counterparty
        ],
    )
    set_price(s, ETH, 1_700)  # oracle only; the venue stays near 2,000
    price = 1_700 * E8
    h = s.health(bankrupt, 0)
    assert h["equity"] + 10 * USD < 0  # the insurance fund cannot cover it
    exp = _expected_deleverage(s, bankrupt, 0, ETH, price)
    assert exp["order"] == [(trader(s, 1), 0), (trader(s, 2), 0), (trader(s, 3), 0)]
    oi_before = open_interest_matches_venue(s, ETH)
    assert oi_before[0] == oi_before[1]
    ins0 = funds(s)["insurance"]

    mined = s.send(s.deleverage_call(bot, bankrupt, 0))

    fills = _events(mined, "Deleveraged")
    assert [(e.args["counterpartyOwner"], e.args["counterpartySubaccount"]) for e in fills] == (
        exp["order"]
    )
    for e, x in zip(fills, exp["fills"], strict=True):
        assert (e.args["owner"], e.args["market"]) == (bankrupt, ETH)
        assert (e.args["size"], e.args["quote"]) == (x["size"], x["quote"])
        assert position(s, x["owner"], x["sub"], ETH) == x["cp_position"]
        assert not s.health(x["owner"], x["sub"])["liquidatable"]
    assert [e.args["size"] for e in fills] == [-3 * ONE] * 3
    # every fill at the bankruptcy price: value at the margin price plus the whole deficit
    assert exp["target"] == value(10 * ONE, price) - h["equity"]
    for e in fills:  # 3/10 of the bankruptcy value, rounded against the counterparty
        assert -e.args["quote"] == ceil_div(exp["target"] * 3, 10)
    # the last 1 ETH had no counterparty left: closed on the venue (near 2,000, above the
    # bankruptcy price), and what it left above zero goes to the insurance fund
    (pl,) = _events(mined, "PositionLiquidated")
    assert (pl.args["sizeClosed"], pl.args["quoteDelta"]) == (
        exp["venue"]["size"],
        exp["venue"]["quote"],
    )
    assert pl.args["sizeClosed"] == -ONE and exp["end"] > 0
    (ad,) = _events(mined, "AccountDeleveraged")
    assert ad.args["sizeDeleveragedNotional"] == exp["deleveraged"]
    assert ad.args["notionalOnVenue"] == abs(exp["venue"]["quote"])
    assert (ad.args["insuranceCover"], ad.args["badDebt"]) == (0, 0)
    (dep,) = _events(mined, "InsuranceDeposited")
    assert dep.args["amount"] == exp["end"] == funds(s)["insurance"] - ins0
    assert collateral(s, bankrupt, 0) == 0 and position(s, bankrupt, 0, ETH) == (0, 0)
    assert position(s, trader(s, 4), 0, ETH)[0] == ONE  # same side: untouched
    assert not _events(mined, "Liquidated")  # no liquidation penalty in ADL
    total, sold = open_interest_matches_venue(s, ETH)
    assert total == sold == oi_before[1] - ONE  # fills net long and short; 1 ETH on the venue
    assert_conserved(s)


def test_adl_ranks_longs_by_mark_over_entry_times_leverage_against_a_bankrupt_short():
    s = waterfall_system(adl=True, insurance_usd=10)
    bankrupt, bot = trader(s, 0), trader(s, 9)
    open_book(
        s,
        [
            (1, "isolated", 4_000, 3 * ONE),  # longs opened first: the lowest entries
            (2, "isolated", 800, 3 * ONE),
            (3, "cross", 1_500, 2 * ONE),
            (0, "isolated", 1_100, -10 * ONE),  # the short that goes bankrupt
        ],
    )
    set_price(s, ETH, 2_300)
    price = 2_300 * E8
    assert s.health(bankrupt, 0)["equity"] + 10 * USD < 0
    exp = _expected_deleverage(s, bankrupt, 0, ETH, price)
    # (mark / entry) x notional / equity: the most leveraged long first
    assert exp["order"] == [(trader(s, 2), 0), (trader(s, 3), 0), (trader(s, 1), 0)]
    mined = s.send(s.deleverage_call(bot, bankrupt, 0))
    fills = _events(mined, "Deleveraged")
    assert [(e.args["counterpartyOwner"], e.args["size"], e.args["quote"]) for e in fills] == [
        (x["owner"], x["size"], x["quote"]) for x in exp["fills"]
    ]
    assert all(e.args["size"] > 0 for e in fills)  # the short buys back
    for x in exp["fills"]:
        assert position(s, x["owner"], x["sub"], ETH) == x["cp_position"]
        assert not s.health(x["owner"], x["sub"])["liquidatable"]
    assert collateral(s, bankrupt, 0) == 0
    total, sold = open_interest_matches_venue(s, ETH)
    assert total == sold
    assert_conserved(s)


def test_adl_at_the_bankruptcy_price_leaves_the_account_at_zero():
    s = waterfall_system(adl=True, insurance_usd=10)
    bankrupt, bot = trader(s, 0), trader(s, 9)
    open_book(s, [(0, "isolated", 1_100, 10 * ONE), (1, "isolated", 5_000, -12 * ONE)])
    set_price(s, ETH, 1_700)
    exp = _expected_deleverage(s, bankrupt, 0, ETH, 1_700 * E8)
    assert exp["venue"] is None and len(exp["fills"]) == 1
    assert -1 <= exp["end"] <= 1  # zero up to the rounding of one fill
    ins0 = funds(s)["insurance"]
    mined = s.send(s.deleverage_call(bot, bankrupt, 0))
    (ad,) = _events(mined, "AccountDeleveraged")
    assert ad.args["notionalOnVenue"] == 0 and ad.args["badDebt"] == 0
    assert funds(s)["insurance"] - ins0 == exp["end"]  # dust both ways through the fund
    assert collateral(s, bankrupt, 0) == 0
    assert position(s, trader(s, 1), 0, ETH) == exp["fills"][0]["cp_position"]
    assert_conserved(s)


def test_adl_caps_each_counterparty_so_it_stays_above_maintenance():
    s = waterfall_system(adl=True, insurance_usd=10)
    capped_book(s)
    bankrupt, cp, bot = trader(s, 0), trader(s, 1), trader(s, 9)
    exp = _expected_deleverage(s, bankrupt, 0, ETH, 1_500 * E8)
    (fill,) = exp["fills"]
    assert 0 < -fill["size"] < 5 * ONE  # the cap binds: part of the short is left
    mined = s.send(s.deleverage_call(bot, bankrupt, 0))
    (e,) = _events(mined, "Deleveraged")
    assert (e.args["size"], e.args["quote"]) == (fill["size"], fill["quote"])
    h = s.health(cp, 0)
    assert not h["liquidatable"]
    assert 0 <= h["equity"] - h["maintenance_requirement"] <= 2 * ADL_SLACK  # the cap is tight
    assert exp["venue"] is not None  # the rest went to the venue
    assert_conserved(s)


def test_adl_falls_back_to_the_venue_then_insurance_then_bad_debt():
    s = waterfall_system(adl=True, insurance_usd=10)
    bankrupt, bot = trader(s, 0), trader(s, 9)
    open_book(s, [(0, "isolated", 1_100, 10 * ONE), (1, "isolated", 1_000, -2 * ONE)])
    set_market(s, ETH, 1_500)  # a seller takes the venue to 1,500 (its short opened below 2,000)
    set_price(s, ETH, 1_800)  # the index recovers: that seller's short is not in profit
    price = 1_800 * E8
    h = s.health(bankrupt, 0)
    assert h["liquidatable"] and h["equity"] + 10 * USD < 0
    # a liquidation would sell 10 ETH into a venue at 1,500: more than the fund covers
    assert revert_reason(s, s.liquidate_call(bot, bankrupt, 0)) == "DeleverageRequired"
    exp = _expected_deleverage(s, bankrupt, 0, ETH, price)
    assert exp["order"] == [(trader(s, 1), 0)]  # the whale's short is not a candidate
    f0 = funds(s)

    mined = s.send(s.deleverage_call(bot, bankrupt, 0))

    (e,) = _events(mined, "Deleveraged")
    assert (e.args["size"], e.args["quote"]) == (-2 * ONE, exp["fills"][0]["quote"])
    (pl,) = _events(mined, "PositionLiquidated")
    assert (pl.args["sizeClosed"], pl.args["quoteDelta"]) == (-8 * ONE, exp["venue"]["quote"])
    deficit = -exp["end"]
    assert deficit > 10 * USD
    (ad,) = _events(mined, "AccountDeleveraged")
    assert (ad.args["insuranceCover"], ad.args["badDebt"]) == (10 * USD, deficit - 10 * USD)
    (rec,) = _events(mined, "BadDebtRecorded")
    assert rec.args["amount"] == deficit - 10 * USD == funds(s)["bad_debt"] - f0["bad_debt"]
    assert funds(s)["insurance"] == 0
    assert collateral(s, bankrupt, 0) == 0
    total, sold = open_interest_matches_venue(s, ETH)
    assert total == sold
    assert_conserved(s)


def test_deleverage_refuses_an_account_the_insurance_fund_covers():
    s = waterfall_system(adl=True)  # 1,000,000 USD of insurance
    open_book(s, [(0, "isolated", 1_100, 10 * ONE), (1, "isolated", 5_000, -12 * ONE)])
    set_price(s, ETH, 1_700)
    assert revert_reason(s, s.deleverage_call(trader(s, 9), trader(s, 0), 0)) == (
        "InsuranceCanCover"
    )
    assert revert_reason(s, s.liquidate_call(trader(s, 9), trader(s, 0), 0)) == ""


# ------------------------------------------------------------------ other rules


def test_the_counterparty_fund_cannot_go_negative():
    s = waterfall_system(counterparty_usd=100)
    alice = trader(s, 0)
    open_account(s, alice, 0, "cross", 0, 1_000)
    s.send(s.trade_call(alice, 0, ETH, ONE))
    set_market(s, ETH, 2_200)  # +200 USD of profit; the fund holds 100 plus the whale's loss
    cp = funds(s)["counterparty"]
    size, basis = position(s, alice, 0, ETH)
    b, q = reserves(s, ETH)
    profit = -amm_quote(b, q, -size) - basis
    assert profit > cp
    mined = s.try_send(s.trade_call(alice, 0, ETH, -ONE))
    assert mined.status == 0
    err = s.exchange.w3.codec.decode(["int256"], bytes(mined.revert_data)[4:])
    assert err[0] == cp - profit
    assert position(s, alice, 0, ETH)[0] == ONE


@pytest.mark.parametrize("foreign", ["other exchange", "no code"])
def test_a_venue_must_belong_to_the_exchange(foreign):
    from sim.chain.artifacts import load_artifact

    s = waterfall_system()
    if foreign == "no code":
        venue = trader(s, 5)
    else:
        art = load_artifact("VirtualAmm")
        data = art.bytecode + abi_encode(
            ["address", "uint256", "uint256"], [trader(s, 5), 10**21, 10**12]
        )
        venue = s.session.deploy(s.deployer, data, 1_000_000)
    call = s.call(
        s.deployer,
        s.exchange,
        "addMarket",
        s.feeds[ETH].address,
        venue,
        s.config.markets[ETH].params_tuple(),
        gas=400_000,
    )
    assert revert_reason(s, call) == "ForeignVenue"


# ------------------------------------------------------------ the whole waterfall


def _names(mined) -> list[str]:
    keep = {
        "PositionLiquidated",
        "Liquidated",
        "BackstopTakeover",
        "BackstopLiquidated",
        "Deleveraged",
        "AccountDeleveraged",
        "BadDebtRecorded",
    }
    return [e.name for e in EventDecoder().decode_all(mined.logs) if e.name in keep]


def test_one_crash_walks_the_whole_waterfall_in_order():
    """ETH falls in steps. A large long is sliced by a liquidator, then closed in full; a second
    long falls below 2/3 of maintenance and the backstop vault takes it over, the insurance fund
    covering its small deficit; a third goes bankrupt by more than the fund holds and is
    auto-deleveraged against the most profitable, most leveraged shorts. No loss is socialized."""
    s = waterfall_system(
        eth_partial=(SLICE_PPM, FULL_CLOSE_USD),
        backstop_ppm=TWO_THIRDS_PPM,
        adl=True,
        insurance_usd=1_000,
    )
    bot, keeper = trader(s, 9), trader(s, 10)
    big, mid, weak, s1, s2 = (trader(s, i) for i in range(5))
    open_book(
        s,
        [
            (0, "isolated", 6_500, 60 * ONE),  # 120,000 USD: above the full-close notional
            (1, "isolated", 700, 5 * ONE),
            (2, "isolated", 1_500, 10 * ONE),
            (3, "isolated", 1_500, -6 * ONE),
            (4, "isolated", 4_000, -6 * ONE),
        ],
    )
    vault = _vault(s)
    log = []

    def step(label, mined):
        assert mined.status == 1, label
        log.append((label, _names(mined)))
        assert_conserved(s)
        total, sold = open_interest_matches_venue(s, ETH)
        assert total == sold
        assert funds(s)["bad_debt"] == 0

    # 1. ETH 1,950: the large long is below maintenance (not below 2/3 of it): a 20% slice
    set_market(s, ETH, 1_950)
    h = s.health(big, 0)
    assert h["liquidatable"] and h["equity"] * PPM >= TWO_THIRDS_PPM * h["maintenance_requirement"]
    assert revert_reason(s, s.backstop_call(keeper, big, 0)) == "AboveBackstopThreshold"
    ins = funds(s)["insurance"]
    mined = s.send(s.liquidate_call(bot, big, 0))
    step("partial", mined)
    (liq,) = _events(mined, "Liquidated")
    assert liq.args["isPartial"] and position(s, big, 0, ETH)[0] == 48 * ONE
    assert funds(s)["insurance"] == ins + liq.args["insuranceShare"]

    # 2. ETH 1,920: 48 ETH is 92,160 USD, below the full-close notional: closed in full
    set_market(s, ETH, 1_920)
    assert s.health(big, 0)["liquidatable"]
    ins = funds(s)["insurance"]
    mined = s.send(s.liquidate_call(bot, big, 0))
    step("full", mined)
    (liq,) = _events(mined, "Liquidated")
    assert not liq.args["isPartial"] and position(s, big, 0, ETH) == (0, 0)
    assert funds(s)["insurance"] == ins + liq.args["insuranceShare"] - liq.args["insuranceCover"]

    # 3. ETH falls until the second long is 30 USD under water: the backstop takes it over
    coll = collateral(s, mid, 0)
    size, basis = position(s, mid, 0, ETH)
    p2 = (basis - coll - 30 * USD) * 10**20 // size
    set_market(s, ETH, p2 / E8)
    p2 = s.exchange.functions.indexPriceE8(ETH).call()
    deficit = -_equity(coll, size, basis, p2)
    assert 0 < deficit < funds(s)["insurance"]
    ins = funds(s)["insurance"]
    mined = s.send(s.backstop_call(keeper, mid, 0))
    step("backstop", mined)
    (bl,) = _events(mined, "BackstopLiquidated")
    assert (bl.args["equity"], bl.args["insuranceCover"], bl.args["badDebt"]) == (
        -deficit,
        deficit,
        0,
    )
    assert funds(s)["insurance"] == ins - deficit
    assert position(s, *vault, ETH) == (size, value(size, p2))
    assert collateral(s, mid, 0) == 0 and collateral(s, *vault) == 0

    # 4. ETH 1,650: the third long's deficit is more than the insurance fund holds. Liquidation and
    #    the backstop defer to ADL; ADL closes it against the shorts, most profitable per margin
    #    first, at its bankruptcy price.
    set_market(s, ETH, 1_650)
    ins = funds(s)["insurance"]
    h = s.health(weak, 0)
    assert h["equity"] + ins < 0
    assert revert_reason(s, s.liquidate_call(bot, weak, 0)) == "DeleverageRequired"
    assert revert_reason(s, s.backstop_call(keeper, weak, 0)) == "DeleverageRequired"
    exp = _expected_deleverage(s, weak, 0, ETH, 1_650 * E8)
    assert exp["order"][:2] == [(s1, 0), (s2, 0)]  # the price-setting whale's short ranks last
    assert exp["venue"] is None
    mined = s.send(s.deleverage_call(keeper, weak, 0))
    step("adl", mined)
    fills = _events(mined, "Deleveraged")
    assert [(e.args["counterpartyOwner"], e.args["size"]) for e in fills] == [
        (s1, -6 * ONE),
        (s2, -4 * ONE),
    ]
    for e, x in zip(fills, exp["fills"], strict=True):
        assert e.args["quote"] == x["quote"]
        assert position(s, x["owner"], x["sub"], ETH) == x["cp_position"]
        assert not s.health(x["owner"], x["sub"])["liquidatable"]
    assert collateral(s, weak, 0) == 0 and position(s, weak, 0, ETH) == (0, 0)
    assert abs(funds(s)["insurance"] - ins) <= 2  # rounding dust only: the shorts took the loss

    assert log == [
        ("partial", ["PositionLiquidated", "Liquidated"]),
        ("full", ["PositionLiquidated", "Liquidated"]),
        ("backstop", ["BackstopTakeover", "BackstopLiquidated"]),
        ("adl", ["Deleveraged", "Deleveraged", "AccountDeleveraged"]),
    ]
