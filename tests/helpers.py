"""Shared helpers for contract tests: exact Python references of the contracts' arithmetic."""

from __future__ import annotations

from dataclasses import replace

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from sim.chain.session import ChainSession
from sim.exchange.client import (
    Call,
    System,
    SystemConfig,
    deploy_system,
    fixture_markets,
    revert_name,
)
from sim.exchange.fill_math import apply_fill, mul_div_ceil_signed, mul_div_floor  # noqa: F401
from sim.units import BASE as ONE
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


# ------------------------------------------------------------ liquidation waterfall

PPM = 10**6


def liquidation_size(size: int, price_e8: int, factor_ppm: int, full_close_units: int) -> int:
    """MarginExchange._liquidationSize: the signed size one liquidation closes."""
    if factor_ppm in (0, PPM) or notional(size, price_e8) <= full_close_units:
        return size
    part = ceil_div(abs(size) * factor_ppm, PPM)
    return part if size > 0 else -part


def position(system: System, owner: str, sub: int, market: int) -> tuple[int, int]:
    """(size, open notional) of a position."""
    size, basis, _ = system.exchange.functions.getPosition(owner, sub, market).call()
    return size, basis


def collateral(system: System, owner: str, sub: int) -> int:
    return system.exchange.functions.getAccount(owner, sub).call()[3]


def funds(system: System) -> dict[str, int]:
    f = system.exchange.functions
    return {
        "insurance": f.insuranceFund().call(),
        "counterparty": f.counterpartyFund().call(),
        "bad_debt": f.totalBadDebt().call(),
        "collateral": f.totalCollateral().call(),
    }


def assert_conserved(system: System) -> None:
    """Token conservation: balance == totalCollateral + insuranceFund + counterpartyFund."""
    f = funds(system)
    balance = system.token.functions.balanceOf(system.exchange.address).call()
    assert balance == f["collateral"] + f["insurance"] + f["counterparty"]


def open_interest_matches_venue(system: System, market: int) -> tuple[int, int]:
    """(sum of every holder's size, base the venue sold): equal when positions net as they should.
    The holders come from the exchange's own list (it includes the backstop vault)."""
    f = system.exchange.functions
    total = 0
    for i in range(f.holderCount(market).call()):
        owner, sub = f.holderAt(market, i).call()
        total += f.getPosition(owner, sub, market).call()[0]
    base_now, _ = reserves(system, market)
    return total, system.config.markets[market].venue_base_reserve - base_now


def waterfall_system(
    *,
    eth_partial: tuple[int, int] = (0, 0),
    btc_partial: tuple[int, int] = (0, 0),
    backstop_ppm: int = 0,
    adl: bool = False,
    insurance_usd: int = 1_000_000,
    counterparty_usd: int = 100_000_000,
    artifact: str = "MarginExchange",
    session: ChainSession | None = None,
) -> System:
    """A system with the waterfall's switches set (fixture markets; sizes in USD)."""
    eth, btc = fixture_markets()
    eth = replace(
        eth, partial_close_factor_ppm=eth_partial[0], full_close_notional_units=eth_partial[1] * USD
    )
    btc = replace(
        btc, partial_close_factor_ppm=btc_partial[0], full_close_notional_units=btc_partial[1] * USD
    )
    config = SystemConfig(
        markets=(eth, btc),
        insurance_fund_units=insurance_usd * USD,
        counterparty_fund_units=counterparty_usd * USD,
        backstop_threshold_ppm=backstop_ppm,
        adl_enabled=adl,
    )
    return deploy_system(
        session or ChainSession(seed=0, n_accounts=24), config, exchange_artifact=artifact
    )


def open_book(s: System, specs) -> None:
    """specs: (trader index, mode, collateral USD, ETH size) -> accounts on subaccount 0."""
    for i, mode, usd, size in specs:
        open_account(s, trader(s, i), 0, mode, ETH, usd)
        s.send(s.trade_call(trader(s, i), 0, ETH, size))


def capped_book(s: System) -> None:
    """A bankrupt 10 ETH long and one CROSS counterparty: short 5 ETH in profit, but a losing BTC
    long leaves it little margin, so the ADL cap binds."""
    cp = trader(s, 1)
    open_book(s, [(0, "isolated", 1_100, 10 * ONE)])
    open_account(s, cp, 0, "cross", 0, 1_600)
    s.send_batch([s.trade_call(cp, 0, ETH, -5 * ONE), s.trade_call(cp, 0, BTC, ONE // 3)])
    set_price(s, ETH, 1_500)
    set_price(s, BTC, 54_000)


class Reader:
    """Raw read-only calls on the exchange, its venues and the token, decoded with eth_abi: about
    three times faster than web3's contract calls, for the stateful test's per-step checks."""

    def __init__(self, system: System):
        self._call = system.session.call
        self._exchange = system.exchange.address
        self._venues = [v.address for v in system.venues]
        self._token = system.token.address
        self._sel: dict[str, bytes] = {}

    def _read(self, to: str, sig: str, types: list[str], args: list, out: list[str]) -> tuple:
        sel = self._sel.get(sig)
        if sel is None:
            sel = self._sel[sig] = keccak(text=sig)[:4]
        return abi_decode(out, self._call(to, sel + abi_encode(types, args)))

    def position(self, owner: str, sub: int, market: int) -> tuple[int, int]:
        (p,) = self._read(
            self._exchange,
            "getPosition(address,uint32,uint256)",
            ["address", "uint32", "uint256"],
            [owner, sub, market],
            ["(int256,int256,int256)"],
        )
        return p[0], p[1]

    def account(self, owner: str, sub: int) -> tuple[int, int, int, int]:
        """(mode, isolated market, market mask, collateral)."""
        (a,) = self._read(
            self._exchange,
            "getAccount(address,uint32)",
            ["address", "uint32"],
            [owner, sub],
            ["(uint8,uint32,uint256,int256)"],
        )
        return a

    def healths(self, accounts: list[tuple[str, int]]) -> list[dict]:
        (hs,) = self._read(
            self._exchange,
            "healthOf(address[],uint32[])",
            ["address[]", "uint32[]"],
            [[o for o, _ in accounts], [s for _, s in accounts]],
            ["(int256,uint256,uint256,uint256,bool)[]"],
        )
        keys = ("equity", "initial_requirement", "maintenance_requirement", "notional")
        return [dict(zip((*keys, "liquidatable"), h, strict=True)) for h in hs]

    def uint(self, name: str) -> int:
        """A no-argument uint256 or int256 view of the exchange (insuranceFund, ...)."""
        out = "int256" if name in ("totalCollateral", "counterpartyFund") else "uint256"
        return self._read(self._exchange, f"{name}()", [], [], [out])[0]

    def holders(self, market: int, start: int = 0) -> list[tuple[str, int]]:
        """The market's holder list from index ``start`` on."""
        (n,) = self._read(
            self._exchange, "holderCount(uint256)", ["uint256"], [market], ["uint256"]
        )
        out = []
        for i in range(start, n):
            owner, sub = self._read(
                self._exchange,
                "holderAt(uint256,uint256)",
                ["uint256", "uint256"],
                [market, i],
                ["address", "uint32"],
            )
            out.append((to_checksum_address(owner), sub))
        return out

    def index_price(self, market: int) -> int:
        return self._read(
            self._exchange, "indexPriceE8(uint256)", ["uint256"], [market], ["uint256"]
        )[0]

    def base_reserve(self, market: int) -> int:
        return self._read(self._venues[market], "baseReserve()", [], [], ["uint256"])[0]

    def token_balance(self, who: str) -> int:
        return self._read(self._token, "balanceOf(address)", ["address"], [who], ["uint256"])[0]
