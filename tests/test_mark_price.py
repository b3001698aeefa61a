"""The robust mark price on the real contracts (``exchange.margin_price = "mark"``): the median of
the index, the venue price and the index x (1 + EMA of the venue/index basis), Hyperliquid's
construction; the EMA's decay; that a tip war on the venue inside one block does not move the mark
past the median (and does not block or fake a liquidation); and that the Python mirror
(sim/exchange/mark.py, the account book, the chain view) computes exactly the contract's mark."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal, getcontext
from pathlib import Path

import pytest

from sim.chain.events import EventDecoder
from sim.chain.session import ChainSession
from sim.exchange.book import AccountBook, MarketRisk
from sim.exchange.client import (
    MARGIN_PRICE_SOURCES,
    MARK_HALF_LIFE_S,
    System,
    SystemConfig,
    deploy_system,
    fixture_markets,
)
from sim.exchange.mark import (
    WAD,
    MarkBasis,
    basis_now,
    half_life_decay_wad,
    mark_price_e8,
    median3,
)
from sim.exchange.view import ChainView, OracleState, VenueState
from sim.units import BASE, PRICE_SCALE
from tests.helpers import (
    ETH,
    WHALE_INDEX,
    open_account,
    reserves,
    revert_reason,
    trader,
    venue_trade_to,
)

P0 = 2_000 * PRICE_SCALE  # the fixture ETH market's initial price


def _system(source: str = "mark", half_life_s: int = MARK_HALF_LIFE_S, session=None) -> System:
    eth, btc = fixture_markets()
    eth = replace(eth, margin_price=source, mark_half_life_s=half_life_s)
    return deploy_system(
        session or ChainSession(seed=0, n_accounts=24), SystemConfig(markets=(eth, btc))
    )


def _touch(s: System):
    """An entry point that loads ETH's context without trading: the owner re-sets its params."""
    return s.send(
        s.call(
            s.deployer,
            s.exchange,
            "setMarketParams",
            ETH,
            s.config.markets[ETH].params_tuple(),
            gas=400_000,
        )
    )


def _basis(s: System) -> MarkBasis:
    return MarkBasis(*s.exchange.functions.markBasis(ETH).call())


def _index(s: System) -> int:
    return s.exchange.functions.indexPriceE8(ETH).call()


def _venue(s: System) -> int:
    return s.venues[ETH].functions.markPriceE8().call()


def _mirror_mark(s: System) -> int:
    return mark_price_e8(
        _basis(s),
        _index(s),
        _venue(s),
        s.session.head().timestamp,
        s.config.markets[ETH].mark_half_life_s,
    )


def _ema(state: MarkBasis) -> int:
    return state.numerator * WAD // state.denominator


# ------------------------------------------------------------------ the arithmetic


def test_half_life_decay_is_two_to_the_minus_age_over_half_life():
    getcontext().prec = 50
    rng = random.Random(7)
    assert half_life_decay_wad(0, 104) == WAD
    assert half_life_decay_wad(104, 104) == WAD // 2
    assert half_life_decay_wad(64 * 104, 104) == 0
    for _ in range(2_000):
        h = rng.randint(1, 10**6)
        dt = rng.randint(0, 70 * h)
        exact = Decimal(2) ** (-Decimal(dt) / Decimal(h)) * WAD
        assert abs(Decimal(half_life_decay_wad(dt, h)) - exact) <= 8


def test_median_of_three():
    for a, b, c in [(1, 2, 3), (3, 2, 1), (2, 3, 1), (2, 2, 5), (5, 1, 5), (4, 4, 4)]:
        assert median3(a, b, c) == sorted((a, b, c))[1]


# ------------------------------------------------------------------ on the contracts


def test_mark_is_the_median_and_the_mirror_computes_it_exactly():
    s = _system()
    decoder = EventDecoder()
    book = AccountBook(
        [MarketRisk(50_000, 30_000, 15_000, 500_000, MARGIN_PRICE_SOURCES["mark"], 104)] * 2,
        s.exchange.address,
        [_basis(s), MarkBasis()],
    )
    whale = trader(s, WHALE_INDEX)
    open_account(s, whale, 0, "cross", ETH, 5_000_000)
    rng = random.Random(3)
    for _ in range(25):
        # random reports and venue moves, each in its own block
        if rng.random() < 0.5:
            mined = s.send(s.report_call(ETH, int(P0 * rng.uniform(0.9, 1.1))))
        else:
            size = int(BASE * rng.uniform(-300, 300))
            mined = s.send(s.trade_call(whale, 0, ETH, size))
        book.apply(e for e in decoder.decode_all(mined.logs) if e.name == "MarkBasisUpdated")
        assert book.mark_basis[ETH] == _basis(s)  # the events carry the stored state
        on_chain = s.exchange.functions.marginPriceE8(ETH).call()
        assert on_chain == _mirror_mark(s)
        basis_mark = (
            _index(s)
            * (WAD + basis_now(_basis(s), _index(s), _venue(s), s.session.head().timestamp, 104)[3])
            // WAD
        )
        assert on_chain == sorted((_index(s), _venue(s), basis_mark))[1]
    # the chain view (what agents and the model read) gives the same price
    view = ChainView(
        [f.address for f in s.feeds],
        [v.address for v in s.venues],
        s.exchange.address,
        book.risk,
        [OracleState(_index(s), 0), OracleState(60_000 * PRICE_SCALE, 0)],
        [VenueState(*reserves(s, ETH)), VenueState(*reserves(s, 1))],
        mark_basis=book.mark_basis,
    )
    view.timestamp_s = s.session.head().timestamp
    assert view.margin_prices_e8()[ETH] == s.exchange.functions.marginPriceE8(ETH).call()


def test_the_basis_ema_halves_its_distance_to_a_new_basis_in_one_half_life():
    """A basis held at s1 for a long time, then at s2 for one half-life (120 s = 10 blocks): the
    EMA is about (s1 + s2) / 2, and exactly the time-weighted recursion numerator x 2^(-dt/h) +
    sample x dt over denominator x 2^(-dt/h) + dt (Hyperliquid's formula, in floating point)."""
    s = _system(half_life_s=120)
    venue = _venue(s)
    s.send(s.report_call(ETH, venue * 100 // 102))  # the venue 2% above the index
    for _ in range(80):  # 16 minutes: 8 half-lives
        _touch(s)
    s1 = (venue - _index(s)) * WAD // _index(s)
    assert abs(_ema(_basis(s)) - s1) < s1 // 200
    s.send(s.report_call(ETH, venue * 100 // 99))  # now 1% below the index
    s2 = (venue - _index(s)) * WAD // _index(s)
    start = _basis(s)
    num, den = float(start.numerator), float(start.denominator)
    t = start.updated_at_s
    for _ in range(9):  # with the report's block: 10 blocks of 12 s = one half-life at s2
        _touch(s)
        dt = s.session.head().timestamp - t
        t += dt
        w = 2 ** (-dt / 120)
        num, den = num * w + s2 * dt, den * w + dt * WAD
    ema = _ema(_basis(s))
    assert abs(ema - num * WAD / den) < WAD * 1e-12
    assert abs(ema - (s1 + s2) / 2) < (s1 - s2) * 0.02  # half way, up to the sampling grid
    assert _basis(s).updated_at_s == s.session.head().timestamp


def test_the_mark_follows_a_lasting_basis_but_not_a_moment_of_it():
    """The venue held 15% below a stale index: the mark walks from the index to the venue as the
    EMA catches up (a lasting basis is real information); it is half way after about a half-life."""
    s = _system()
    whale = trader(s, WHALE_INDEX)
    open_account(s, whale, 0, "cross", ETH, 5_000_000)
    for _ in range(30):
        _touch(s)
    s.send(s.trade_call(whale, 0, ETH, venue_trade_to(s, ETH, P0 * 85 // 100)))
    marks = []
    for _ in range(60):
        _touch(s)
        marks.append(s.exchange.functions.marginPriceE8(ETH).call())
    index, venue = _index(s), _venue(s)
    assert marks[0] < index and marks == sorted(marks, reverse=True)
    assert abs(marks[-1] - venue) < (index - venue) // 100  # within 1% of the gap after 12 min
    halfway = next(i for i, m in enumerate(marks) if m <= (index + venue) // 2)
    assert 6 <= halfway + 1 <= 11  # about 104 s / 12 s = 8.7 blocks


@pytest.mark.parametrize("source", ["mark", "venue"])
def test_a_tip_war_on_the_venue_moves_the_venue_price_not_the_mark(source):
    """In one block a forced sale pushes the venue 15% down, a liquidation of an account that is
    healthy at the index follows, then arbitrage buys the venue back. Margined on the venue's raw
    price the account is liquidated at the dip; on the mark price the liquidation reverts (the mark
    stays at the median of the index and the basis mark), and the dip leaves no trace in the EMA."""
    s = _system(source)
    whale, alice, bot = trader(s, WHALE_INDEX), trader(s, 0), trader(s, 9)
    open_account(s, whale, 0, "cross", ETH, 5_000_000)
    open_account(s, alice, 0, "isolated", ETH, 1_100)
    s.send(s.trade_call(alice, 0, ETH, 10 * BASE))  # 20,000 USD long: liquidatable below ~1,948
    s.send(s.trade_call(whale, 0, ETH, venue_trade_to(s, ETH, P0)))  # the venue back at the index
    for _ in range(20):
        _touch(s)
    ema_before = _ema(_basis(s)) if source == "mark" else 0
    mark_before = s.exchange.functions.marginPriceE8(ETH).call()
    dip = venue_trade_to(s, ETH, P0 * 85 // 100)
    head = s.session.head().number
    mined = s.send_batch(
        [
            s.trade_call(whale, 0, ETH, dip),  # the venue to 1,700
            s.liquidate_call(bot, alice, 0),
            s.trade_call(whale, 0, ETH, -dip),  # arbitrage back to about 2,000
        ],
        check=False,
    )
    assert s.session.head().number == head + 1, "one block"
    liquidated = mined[1].status == 1
    if source == "venue":
        assert liquidated
        return
    assert not liquidated
    from sim.exchange.client import revert_name

    assert revert_name(mined[1].revert_data) == "AccountHealthy"
    basis = _basis(s)
    assert abs(_ema(basis) - ema_before) <= abs(ema_before) // 10 + 10**12  # no trace of the dip
    index = _index(s)
    basis_mark = index * (WAD + _ema(basis)) // WAD
    mark_after = s.exchange.functions.marginPriceE8(ETH).call()
    lo, hi = min(index, basis_mark), max(index, basis_mark)
    assert lo <= mark_after <= hi and abs(mark_after - mark_before) < P0 // 1_000
    assert revert_reason(s, s.liquidate_call(bot, alice, 0)) == "AccountHealthy"


def test_mark_price_needs_a_half_life_and_switching_to_it_starts_the_ema_afresh():
    s = _system("index")
    params = list(s.config.markets[ETH].params_tuple())
    params[5], params[10] = MARGIN_PRICE_SOURCES["mark"], 0
    call = s.call(s.deployer, s.exchange, "setMarketParams", ETH, tuple(params), gas=400_000)
    mined = s.try_send(call)
    assert mined.status == 0
    from eth_abi import decode

    assert mined.revert_data[4:] and decode(["uint8"], mined.revert_data[4:]) == (7,)
    params[10] = 60
    mined = s.send(
        s.call(s.deployer, s.exchange, "setMarketParams", ETH, tuple(params), gas=400_000)
    )
    events = [e for e in EventDecoder().decode_all(mined.logs) if e.name == "MarkBasisUpdated"]
    assert len(events) == 1 and events[0].args["denominator"] == 0
    assert _basis(s) == MarkBasis(0, 0, s.session.head().timestamp)
    assert s.exchange.functions.marginPriceE8(ETH).call() == _mirror_mark(s)


def test_index_and_venue_markets_keep_no_ema():
    """Only mark-priced markets pay for the EMA: other markets' trades store and emit nothing."""
    s = _system("venue")
    whale = trader(s, WHALE_INDEX)
    open_account(s, whale, 0, "cross", ETH, 5_000_000)
    before = _basis(s)
    mined = s.send(s.trade_call(whale, 0, ETH, 10 * BASE))
    assert not [e for e in EventDecoder().decode_all(mined.logs) if e.name == "MarkBasisUpdated"]
    assert _basis(s) == before
    assert s.exchange.functions.marginPriceE8(ETH).call() == _venue(s)


# ------------------------------------------------------------------ in the model


@pytest.mark.parametrize("source", ["mark", "venue"])
def test_the_models_mirror_margins_at_the_chains_price(source):
    """A crashy tiny run margined on the mark (or the raw venue) price: every block the mirror's
    margin prices are the chain's ``marginPriceE8`` and, at the end, every account's health is
    the chain's ``accountHealth``."""
    from sim.api import resolve_scenario
    from sim.exchange.book import health_of
    from sim.model import LiqSimModel
    from tests.test_model import CRASHY, TINY

    m = LiqSimModel(resolve_scenario(TINY, [*CRASHY, f"exchange.margin_price={source}"]), seed=5)
    ex = m.system.exchange.functions
    n = len(m.scenario.markets)
    for _ in range(m.scenario.run.blocks):
        m.step()
        assert m.view.margin_prices_e8() == [ex.marginPriceE8(i).call() for i in range(n)]
    prices = m.view.margin_prices_e8()
    for (owner, sub), acct in m.view.book.accounts.items():
        h = ex.accountHealth(owner, sub).call()
        mine = health_of(acct, prices, m.view.book.risk)
        assert (h[0], h[2], h[4]) == (
            mine.equity_units,
            mine.maintenance_requirement_units,
            mine.liquidatable,
        )
    if source == "mark":
        assert m.view.book.mark_basis[0].denominator > 0  # the EMA took samples
    assert len(m.recorder.tables()["liquidations"]) > 0


def test_blocks_table_records_the_margin_price():
    """The blocks table has each market's margin price: the oracle's under margin_price =
    index, the robust mark (between the oracle and the venue) under mark."""
    from sim.api import run_scenario
    from sim.output.plots import margin_series

    tiny = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.toml"
    index = run_scenario(tiny, seed=1, counterfactual=False, plots=False).blocks
    assert index["ETH_margin_usd"].equals(index["ETH_oracle_usd"])
    assert margin_series(index, "ETH") is None
    mark = run_scenario(
        tiny, seed=1, counterfactual=False, plots=False, overrides=["exchange.margin_price=mark"]
    ).blocks
    lo = mark[["ETH_oracle_usd", "ETH_venue_usd"]].min(axis=1)
    hi = mark[["ETH_oracle_usd", "ETH_venue_usd"]].max(axis=1)
    assert ((mark["ETH_margin_usd"] >= lo - 1e-6) & (mark["ETH_margin_usd"] <= hi + 1e-6)).all()
    assert margin_series(mark, "ETH") is not None
