"""A scripted demo on the real contracts: deploy, open CROSS and ISOLATED positions in two
markets, crash one market's oracle price, liquidate, and print what happened to each account."""

from __future__ import annotations

from collections.abc import Callable
from math import isqrt

from sim.chain.events import EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.client import System, deploy_system
from sim.units import BASE, PRICE_SCALE, USD

ETH, BTC = 0, 1


def _usd(units: int) -> str:
    return f"{units / USD:>12,.2f}"


def _open(
    system: System, owner: str, sub: int, mode: str, market: int, collateral_usd: int
) -> None:
    units = collateral_usd * USD
    system.send_batch(
        system.fund_trader_calls(owner, units)
        + system.open_account_calls(owner, sub, mode, market, units)
    )


def _move_venue_call(system: System, arb: str, market: int, price_e8: int):
    v = system.venues[market].functions
    base, quote = v.baseReserve().call(), v.quoteReserve().call()
    k = base * quote
    new_base = k // isqrt(k * price_e8 // 10**20)
    return system.trade_call(arb, 0, market, base - new_base)


def run_demo(print_fn: Callable[[str], None] = print, crash: float = 0.15) -> dict[str, dict]:
    """Run the demo; return each account's final state keyed by its label."""
    session = ChainSession(seed=0, n_accounts=12)
    system = deploy_system(session)
    acc = [a.address for a in session.accounts]
    cross_trader, iso_trader, arb, liquidator = acc[2], acc[3], acc[4], acc[5]
    book = {
        "cross  (ETH+BTC)": (cross_trader, 0),
        "isolated ETH": (iso_trader, 0),
        "isolated BTC": (iso_trader, 1),
    }
    print_fn("liqsim demo: real MarginExchange contracts on py-evm (eth-tester), via web3.py")
    print_fn(f"  exchange {system.exchange.address}, markets {system.market_names}")
    _open(system, cross_trader, 0, "cross", 0, 2_000)
    _open(system, iso_trader, 0, "isolated", ETH, 1_000)
    _open(system, iso_trader, 1, "isolated", BTC, 1_000)
    _open(system, arb, 0, "cross", 0, 5_000_000)
    eth, btc = 5 * BASE, BASE // 6  # 10,000 USD of each at 2,000 and 60,000
    system.send_batch(
        [
            system.trade_call(cross_trader, 0, ETH, eth),
            system.trade_call(cross_trader, 0, BTC, btc),
            system.trade_call(iso_trader, 0, ETH, eth),
            system.trade_call(iso_trader, 1, BTC, btc),
        ]
    )
    print_fn("\nopened: the same exposure (10,000 USD long ETH + 10,000 USD long BTC) twice:")
    print_fn(
        "  one CROSS subaccount with 2,000 USD, or two ISOLATED subaccounts with 1,000 USD each"
    )
    _print_book(system, book, print_fn)

    new_price = int(2_000 * (1 - crash) * PRICE_SCALE)
    system.send_batch(
        [system.report_call(ETH, new_price), _move_venue_call(system, arb, ETH, new_price)]
    )
    print_fn(
        f"\nETH oracle crashes {crash:.0%} to {new_price / PRICE_SCALE:,.0f} USD"
        " (an arbitrageur moves the venue too)"
    )
    _print_book(system, book, print_fn)

    decoder = EventDecoder()
    liquidated: dict[str, list[str]] = {}  # label -> markets whose positions were closed
    print_fn("\nliquidator sweeps every liquidatable account:")
    for label, (owner, sub) in book.items():
        if not system.health(owner, sub)["liquidatable"]:
            print_fn(f"  {label:<17} healthy, left alone")
            continue
        mined = system.send(system.liquidate_call(liquidator, owner, sub, n_markets=2))
        liquidated[label] = []
        for ev in decoder.decode_all(mined.logs):
            if ev.name == "PositionLiquidated":
                name = system.market_names[ev.args["market"]]
                liquidated[label].append(name)
                pnl = _usd(ev.args["realizedPnl"])
                print_fn(f"  {label:<17} {name} position closed, realized PnL {pnl}")
            if ev.name == "Liquidated":
                a = ev.args
                print_fn(
                    f"  {label:<17} penalty {_usd(a['penaltyPaid'])}"
                    f" (liquidator {_usd(a['liquidatorReward'])}),"
                    f" insurance cover {_usd(a['insuranceCover'])},"
                    f" bad debt {_usd(a['badDebt'])}; gas {mined.gas_used:,}"
                )
    print_fn("\nafter liquidation:")
    final = _print_book(system, book, print_fn)
    f = system.exchange.functions
    insurance, bad = _usd(f.insuranceFund().call()), _usd(f.totalBadDebt().call())
    print_fn(f"\ninsurance fund {insurance} USD, bad debt {bad} USD")
    for line in conclusions(crash, liquidated):
        print_fn(line)
    return final


def conclusions(crash: float, liquidated: dict[str, list[str]]) -> list[str]:
    """The closing lines: what the crash did to each margin mode, as it happened."""
    cross = liquidated.get("cross  (ETH+BTC)")
    iso_eth, iso_btc = liquidated.get("isolated ETH"), liquidated.get("isolated BTC")
    if not liquidated:
        return [
            f"A {crash:.0%} fall liquidated nobody: every account kept equity above its "
            "maintenance requirement (try a larger fall, e.g. --crash 0.15)."
        ]
    lines = []
    if cross is None:
        lines.append("CROSS: the shared collateral absorbed the ETH loss; nothing was liquidated.")
    elif "BTC" in cross:
        lines.append("CROSS: the ETH loss took the BTC position down with it (contagion).")
    else:
        lines.append("CROSS: the account was liquidated (" + ", ".join(cross) + ").")
    if iso_eth is None:
        lines.append("ISOLATED: the ETH subaccount survived the fall; nothing was liquidated.")
    elif iso_btc is None:
        lines.append(
            "ISOLATED: the ETH subaccount was liquidated; the BTC subaccount survived untouched."
        )
    else:
        lines.append("ISOLATED: both subaccounts were liquidated.")
    return lines


def _print_book(system: System, book: dict[str, tuple[str, int]], print_fn) -> dict[str, dict]:
    f = system.exchange.functions
    header = f"  {'account':<17} {'ETH size':>9} {'BTC size':>9} {'equity':>12} {'maint. req':>12}"
    print_fn(header + "  status")
    out = {}
    for label, (owner, sub) in book.items():
        h = system.health(owner, sub)
        sizes = [f.getPosition(owner, sub, m).call()[0] / BASE for m in (ETH, BTC)]
        status = "LIQUIDATABLE" if h["liquidatable"] else "ok"
        equity, mm = _usd(h["equity"]), _usd(h["maintenance_requirement"])
        print_fn(f"  {label:<17} {sizes[0]:>9.4f} {sizes[1]:>9.4f} {equity} {mm}  {status}")
        out[label] = {**h, "eth_size": sizes[0], "btc_size": sizes[1]}
    return out
