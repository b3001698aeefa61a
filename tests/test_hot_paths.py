"""The shortcuts on the model's hot paths give what the plain computation gives: the inlined
health arithmetic, equity alone, the external market's stored prices and the health read shared
within a block."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sim.api import resolve_scenario
from sim.exchange.book import (
    PPM,
    AccountState,
    Health,
    MarketRisk,
    PositionState,
    _ceil_div,
    equity_of,
    health_of,
    position_notional,
    position_value,
)

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.toml"
RISK = (MarketRisk(50_000, 30_000, 10_000, 500_000), MarketRisk(100_000, 60_000, 20_000, 500_000))


def _plain_health(account: AccountState, prices_e8, risk) -> Health:
    """MarginExchange._health written with the named helpers (the reference)."""
    equity = account.collateral_units
    im = mm = total = 0
    for m, p in account.positions.items():
        equity += position_value(p.size_base, prices_e8[m]) - p.open_notional_units
        n = position_notional(p.size_base, prices_e8[m])
        total += n
        im += _ceil_div(n * risk[m].initial_margin_ppm, PPM)
        mm += _ceil_div(n * risk[m].maintenance_margin_ppm, PPM)
    return Health(equity, im, mm, total)


sizes = st.integers(-(10**24), 10**24)
positions = st.dictionaries(
    st.integers(0, 1), st.builds(PositionState, sizes, st.integers(-(10**12), 10**12)), max_size=2
)


@given(
    positions,
    st.integers(0, 10**12),
    st.lists(st.integers(1, 10**14), min_size=2, max_size=2),
)
def test_inlined_health_and_equity_match_the_reference(pos, collateral, prices):
    account = AccountState("0xa", 0, 1, 0, collateral_units=collateral, positions=pos)
    assert health_of(account, prices, RISK) == _plain_health(account, prices, RISK)
    assert equity_of(account, prices) == _plain_health(account, prices, RISK).equity_units


def test_stored_external_prices_equal_fresh_ones():
    from sim.model.model import LiqSimModel

    model = LiqSimModel(resolve_scenario(TINY), seed=1)
    try:
        for _ in range(15):
            model.step()
        ext = model.external
        for i, name in enumerate(ext.names):
            for b in range(model.block):
                stored = ext.price_e8(i, b)
                assert stored == round(ext.price(i, b) * 1e8) == ext.price_e8(name, b)
    finally:
        model.session.close()


def test_one_health_read_per_candidate_list_and_block():
    from sim.model.model import LiqSimModel

    model = LiqSimModel(resolve_scenario(TINY), seed=1)
    try:
        for _ in range(5):
            model.step()
        calls = []
        healths = model.system.healths

        def counted(owners, subaccounts):
            calls.append(len(owners))
            return healths(owners, subaccounts)

        model.system.healths = counted
        candidates = list(model.view.book.accounts.values())[:3]
        first = model.confirm_liquidatable(candidates)
        assert model.confirm_liquidatable(candidates) == first
        assert len(calls) == 1
        model.confirm_liquidatable(candidates[:2])  # another list: another read
        assert len(calls) == 2
        model.step()  # a new block: read again
        model.confirm_liquidatable(candidates)
        assert len(calls) == 3
    finally:
        model.session.close()
