"""liqsim stress: liquidation prices against the hand-computed closed form, what goes first,
the other-margin-mode book, and input errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from sim.scenario.loader import ConfigError
from sim.stress.driver import run_stress
from sim.stress.positions import load_positions, other_mode, parse_moves
from tests.helpers import amm_quote, ceil_div, notional, value

ROOT = Path(__file__).resolve().parent.parent
E8, ONE, USD = 10**8, 10**18, 10**6

BOOK = """
scenario = "{scenario}"
[prices]
ETH = 2000.0
BTC = 50000.0

[[accounts]]
name = "iso-eth"
mode = "isolated"
collateral_usd = 500
  [[accounts.positions]]
  market = "ETH"
  side = "long"
  size = 2.0

[[accounts]]
name = "both"
mode = "cross"
collateral_usd = 10000
  [[accounts.positions]]
  market = "ETH"
  side = "long"
  notional_usd = 60000
  [[accounts.positions]]
  market = "BTC"
  side = "short"
  notional_usd = 20000
"""


def _trunc_div(a: int, b: int) -> int:
    """Solidity's signed division (rounds toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


@pytest.fixture(scope="module")
def stressed(tmp_path_factory):
    d = tmp_path_factory.mktemp("stress")
    (d / "book.toml").write_text(
        BOOK.format(scenario=(ROOT / "scenarios" / "default.toml").as_posix())
    )
    return run_stress(d / "book.toml", [-0.05, -0.15], None, d / "out")


def test_isolated_liquidation_price_matches_closed_form(stressed):
    """p = p0 + (MM0 - E0) * 1e20 * 1e6 / (s * 1e6 - |s| * mm_ppm), every term by hand."""
    sc = stressed.input.scenario
    eth = sc.markets[sc.market_index("ETH")]
    p0 = 2000 * E8
    depth = int(eth.venue_depth_usd * USD)
    base_reserve = depth * 10**20 // p0  # the venue starts at the current price
    size = 2 * ONE
    paid = amm_quote(base_reserve, depth, size)  # the opening trade, with its price impact
    equity = 500 * USD + value(size, p0) - paid
    mm_ppm = round(eth.maintenance_margin * 1e6)
    mm = ceil_div(notional(size, p0) * mm_ppm, 10**6)
    expected = p0 + _trunc_div((mm - equity) * 10**20 * 10**6, size * 10**6 - abs(size) * mm_ppm)

    pos = stressed.positions
    row = pos[(pos["book"] == "as given") & (pos["subaccount"] == 0)].iloc[0]
    assert row["mode"] == "isolated" and row["market"] == "ETH"
    assert int(row["equity_units"]) == equity and int(row["maintenance_units"]) == mm
    assert abs(int(row["liquidation_price_e8"]) - expected) <= 1
    assert row["liquidation_price_usd"] == pytest.approx(expected / E8, abs=1e-6)
    # the liquidation move of the position agrees with its price
    assert row["liquidation_move_this_market"] == pytest.approx(expected / p0 - 1, abs=1e-6)
    # saved to disk with exact integers
    saved = pd.read_csv(stressed.folder / "positions.csv", dtype={"liquidation_price_e8": str})
    assert int(saved.loc[0, "liquidation_price_e8"]) == int(row["liquidation_price_e8"])


def test_liquidated_exactly_beyond_the_liquidation_move(stressed):
    s, pos = stressed.stress, stressed.positions
    for _, p in pos.iterrows():
        rows = s[(s["book"] == p["book"]) & (s["subaccount"] == p["subaccount"])]
        x = p["liquidation_move_all_markets"]
        for _, r in rows.iterrows():
            if r["move"] == 0:
                assert not r["liquidatable"]
                continue
            # healthy now: a fall liquidates when x < 0 (net long), a rise when x > 0 (net short)
            expected = r["move"] <= x if x < 0 else r["move"] >= x
            assert r["liquidatable"] == expected, (p["book"], p["subaccount"], r["move"], x)
            assert r["liquidated"] == r["liquidatable"]
            if r["liquidated"]:
                assert r["equity_after_usd"] >= 0 and r["notional_closed_usd"] > 0


def test_what_goes_first_and_the_other_mode(stressed):
    first = stressed.first
    given = first[first["book"] == "as given"]
    # the 8x isolated ETH long (liquidation near -9.8%) goes at -15%; the hedged cross account
    # (liquidation near -20% of both markets) survives both moves
    assert list(given["subaccount"]) == [0, 1]
    assert given.iloc[0]["first_liquidated_move"] == -0.15 and pd.isna(
        given.iloc[1]["first_liquidated_move"]
    )
    # other mode: the isolated account becomes cross, the cross one splits into two isolated
    other = stressed.positions[stressed.positions["book"] == "other mode"]
    assert sorted(zip(other["mode"], other["market"], strict=True)) == [
        ("cross", "ETH"),
        ("isolated", "BTC"),
        ("isolated", "ETH"),
    ]
    split = other[other["mode"] == "isolated"]
    assert split["collateral_usd"].sum() == pytest.approx(10_000)
    # collateral in proportion to initial margin (both markets 5%): 60k : 20k notional
    assert split.set_index("market").loc["ETH", "collateral_usd"] == pytest.approx(7_500)
    # under ISOLATED the BTC short is not hurt by a fall, and is never liquidated
    btc = stressed.stress[
        (stressed.stress["book"] == "other mode") & (stressed.stress["markets"] == "BTC")
    ]
    assert not btc["liquidated"].any()
    moves = pd.read_csv(stressed.folder / "moves.csv")
    assert set(moves["book"]) == {"as given", "other mode"} and sorted(moves["move"].unique()) == [
        -0.15,
        -0.05,
        0.0,
    ]
    for name in (
        "stress.csv",
        "stress.parquet",
        "positions.parquet",
        "report.md",
        "plots/stress.png",
        "positions.toml",
    ):
        assert (stressed.folder / name).is_file()


def test_other_mode_merges_isolated_into_cross():
    inp = load_positions(ROOT / "scenarios" / "positions_example.toml")
    alt = other_mode(inp.book, inp.scenario, inp.prices)
    assert [a.mode for a in alt.accounts] == ["isolated", "isolated", "cross"]
    assert sum(a.collateral_usd for a in alt.accounts) == sum(
        a.collateral_usd for a in inp.book.accounts
    )
    assert alt.accounts[2].collateral_usd == Decimal(2000)


def test_parse_moves():
    assert parse_moves("-5%,-10%") == [-0.05, -0.10]
    assert parse_moves("-0.3, 0.1") == [0.1, -0.3]
    for bad in ("", "-100%", "abc", "0"):
        with pytest.raises(ConfigError):
            parse_moves(bad)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('[[accounts]]\nmode = "cross"\ncollateral_usd = 100\n', "accounts.0.positions"),
        ('[[accounts]]\nmode = "both"\ncollateral_usd = 1\n', "accounts.0.mode"),
        (
            '[[accounts]]\nmode = "isolated"\ncollateral_usd = 100\n'
            '[[accounts.positions]]\nmarket = "DOGE"\n'
            'side = "long"\nsize = 1\n',
            "accounts.0.positions.0.market",
        ),
        (
            '[[accounts]]\nmode = "isolated"\ncollateral_usd = 100\n'
            '[[accounts.positions]]\nmarket = "ETH"\n'
            'side = "long"\nsize = 1\nnotional_usd = 5\n',
            "exactly one of size",
        ),
        ('[[accounts]]\nmode = "isolated"\ncollateral_usd = -5\n', "accounts.0.collateral_usd"),
        ("levrage = 3\n", "unknown key"),
    ],
)
def test_bad_positions_files_name_the_field(tmp_path, body, where):
    f = tmp_path / "p.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")) as err:
        load_positions(f)
    assert str(f) in str(err.value)


def test_position_too_big_for_its_collateral_is_a_clear_error(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(
        '[[accounts]]\nmode = "isolated"\ncollateral_usd = 100\n'
        '[[accounts.positions]]\nmarket = "ETH"\n'
        'side = "long"\nnotional_usd = 100000\n'
    )
    with pytest.raises(ConfigError, match="InsufficientMargin"):
        run_stress(f, [-0.1], None, tmp_path / "out")
