"""Shared helpers for contract tests: exact Python references of the contracts' arithmetic."""

from __future__ import annotations

from sim.exchange.client import Call, System, revert_name
from sim.units import PRICE_SCALE as E8
from sim.units import USD

ETH, BTC = 0, 1


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def amm_quote(base_reserve: int, quote_reserve: int, base_delta: int) -> int:
    """VirtualAmm._quote: quote paid (+) or received (-), new quote reserve rounded up."""
    k = base_reserve * quote_reserve
    new_base = base_reserve - base_delta
    new_quote = ceil_div(k, new_base)
    return new_quote - quote_reserve


def reserves(system: System, market: int) -> tuple[int, int]:
    v = system.venues[market].functions
    return v.baseReserve().call(), v.quoteReserve().call()


def value(size: int, price_e8: int) -> int:
    """MarginMath.value: floor(size * price / 1e20)."""
    return size * price_e8 // 10**20


def notional(size: int, price_e8: int) -> int:
    return ceil_div(abs(size) * price_e8, 10**20)


def trader(system: System, i: int) -> str:
    """Dev account ``i`` (indices 0 and 1 are the deployer and the reporter)."""
    return system.session.accounts[2 + i].address


def open_account(
    system: System, owner: str, sub: int, mode: str, market: int, collateral_usd: float
) -> None:
    units = int(collateral_usd * USD)
    calls = system.fund_trader_calls(owner, units) + system.open_account_calls(
        owner, sub, mode, market, units
    )
    system.send_batch(calls)


def revert_reason(system: System, call: Call) -> str:
    """Send ``call`` alone in a block; return the decoded custom error ('' if it succeeded)."""
    mined = system.try_send(call)
    if mined.status == 1:
        return ""
    return revert_name(mined.revert_data)


def set_price(system: System, market: int, price_usd: float) -> None:
    system.send(system.report_call(market, round(price_usd * E8)))


WHALE_INDEX = 15
WHALE_COLLATERAL_USD = 50_000_000


def venue_trade_to(system: System, market: int, price_e8: int) -> int:
    """Base delta that moves the venue's mark price to ``price_e8`` (k held constant)."""
    from math import isqrt

    base, quote = reserves(system, market)
    k = base * quote
    new_quote = isqrt(k * price_e8 // 10**20)
    new_base = k // new_quote
    return base - new_base  # + buys (price up), - sells (price down)


def set_market(system: System, market: int, price_usd: float) -> None:
    """Write the oracle price and trade the venue to it (as an arbitrageur would)."""
    price_e8 = round(price_usd * E8)
    whale = trader(system, WHALE_INDEX)
    if system.exchange.functions.getAccount(whale, 0).call()[0] == 0:
        open_account(system, whale, 0, "cross", 0, WHALE_COLLATERAL_USD)
    delta = venue_trade_to(system, market, price_e8)
    calls = [system.report_call(market, price_e8)]
    if delta != 0:
        calls.append(system.trade_call(whale, 0, market, delta))
    system.send_batch(calls)
