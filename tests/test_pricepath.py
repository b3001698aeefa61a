"""Exogenous price paths, the crash overlay, CSV series, price impact and background demand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sim.scenario.pricepath import (
    BackgroundProfile,
    ExternalMarket,
    PricePathError,
    correlation_factor,
    correlation_matrix,
    crash_intensity,
    crash_multiplier,
    exogenous_paths,
    read_price_csv,
    simulate_gbm,
)
from sim.scenario.schema import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "scenarios" / "tiny.toml"


def calm(scenario: Scenario, *extra: str) -> Scenario:
    """No randomness: zero volatility, no jumps, no drift."""
    overrides = [
        f"markets.{i}.{k}=0"
        for i in range(len(scenario.markets))
        for k in ("volatility_annual", "jump_intensity_per_day", "drift_annual")
    ]
    return scenario.with_overrides([*overrides, *extra])


# -- GBM --------------------------------------------------------------------------------------


def test_same_seed_same_path_and_different_seed_differs():
    s = load_scenario(TINY)
    a = exogenous_paths(s, np.random.default_rng(7))
    b = exogenous_paths(s, np.random.default_rng(7))
    c = exogenous_paths(s, np.random.default_rng(8))
    assert a.shape == (s.run.blocks + 1, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a[0].tolist() == [2500.0, 60000.0]


def test_global_numpy_rng_is_not_used():
    s = load_scenario(TINY)
    np.random.seed(0)
    a = exogenous_paths(s, np.random.default_rng(1))
    np.random.seed(99)
    b = exogenous_paths(s, np.random.default_rng(1))
    assert np.array_equal(a, b)
    with pytest.raises(TypeError, match="Generator"):
        exogenous_paths(s, 1)  # type: ignore[arg-type]


def test_correlation_of_simulated_returns_matches_target():
    target = np.array([[1.0, 0.8, -0.3], [0.8, 1.0, 0.0], [-0.3, 0.0, 1.0]])
    path = simulate_gbm(
        np.random.default_rng(3),
        [100.0, 200.0, 50.0],
        blocks=20_000,
        dt_years=12 / (365.25 * 86400),
        drift_annual=0.0,
        volatility_annual=[0.7, 0.5, 1.0],
        corr_factor=correlation_factor(target),
    )
    returns = np.diff(np.log(path), axis=0)
    assert np.allclose(np.corrcoef(returns.T), target, atol=0.03)
    # and the per-block volatility matches sigma * sqrt(dt)
    dt = 12 / (365.25 * 86400)
    assert np.allclose(returns.std(axis=0), np.array([0.7, 0.5, 1.0]) * math.sqrt(dt), rtol=0.03)


def test_jumps_are_drift_compensated():
    # mean gross return over many paths stays ~1 with zero drift, even with big negative jumps
    rng = np.random.default_rng(5)
    path = simulate_gbm(
        rng,
        np.full(4000, 100.0),
        blocks=50,
        dt_years=12 / (365.25 * 86400),
        drift_annual=0.0,
        volatility_annual=0.0,
        corr_factor=np.eye(4000),
        jump_rate_per_block=0.05,
        jump_mean=-0.05,
        jump_sd=0.02,
    )
    assert abs(path[-1].mean() / 100.0 - 1.0) < 0.01
    assert (path[-1] != 100.0).mean() > 0.8  # jumps did happen


def test_singular_but_psd_correlation_is_accepted():
    factor = correlation_factor(correlation_matrix(2, 1.0))
    assert np.allclose(factor @ factor.T, np.ones((2, 2)))


@pytest.mark.parametrize(
    ("corr", "message"),
    [
        (correlation_matrix(3, -0.8), "not positive semi-definite"),
        (np.array([[1.0, 0.2], [0.3, 1.0]]), "not symmetric"),
        (np.array([[2.0, 0.0], [0.0, 1.0]]), "diagonal must be 1"),
        (np.ones((2, 3)), "must be square"),
    ],
)
def test_bad_correlation_rejected(corr, message):
    with pytest.raises(PricePathError, match=message):
        correlation_factor(corr)


# -- crash ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["linear", "exponential"])
def test_crash_falls_by_the_configured_fraction(shape):
    s = calm(load_scenario(TINY), f"crash.shape={shape}", "crash.recovery_fraction=0")
    path = exogenous_paths(s, np.random.default_rng(0))
    start, end = s.crash.start_block, s.crash.end_block
    for i, m in enumerate(s.markets):
        assert path[start, i] == pytest.approx(m.initial_price_usd)
        assert path[end, i] / path[start, i] == pytest.approx(1 - m.crash_fall)
        assert np.all(np.diff(path[start : end + 1, i]) < 0)
        assert path[-1, i] == pytest.approx(path[end, i])  # no recovery


def test_crash_shapes_and_recovery():
    lin = crash_multiplier(
        40,
        start_block=10,
        duration_blocks=20,
        falls=[0.2],
        shape="linear",
        recovery_fraction=0.5,
        recovery_blocks=5,
    )[:, 0]
    exp = crash_multiplier(
        40, start_block=10, duration_blocks=20, falls=[0.2], shape="exponential"
    )[:, 0]
    assert lin[20] == pytest.approx(0.9)  # halfway: half the fall
    assert exp[20] == pytest.approx(math.sqrt(0.8))  # halfway: half the log fall
    assert np.allclose(np.diff(np.log(exp[10:31])), math.log(0.8) / 20)  # constant % per block
    assert lin[30] == pytest.approx(0.8)
    assert lin[35] == pytest.approx(0.9) and lin[40] == pytest.approx(0.9)  # half regained


def test_disabled_crash_leaves_the_path_flat():
    s = calm(load_scenario(TINY), "crash.enabled=false")
    path = exogenous_paths(s, np.random.default_rng(0))
    assert np.allclose(path, path[0])


# -- CSV --------------------------------------------------------------------------------------


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_series_is_read_per_block(tmp_path):
    path = write_csv(tmp_path, "block,BTC,ETH\n0,60000,2500\n1,59000,2400.5\n2,58000,2300\n3,1,1\n")
    prices = read_price_csv(path, ["ETH", "BTC"], blocks=2)
    assert prices.tolist() == [[2500, 60000], [2400.5, 59000], [2300, 58000]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ETH,BTC\n1,2\n1,nan\n1,2\n", r"line 3 \(block 1\), column 'BTC': price is NaN"),
        ("ETH,BTC\n1,2\n-1,2\n1,2\n", r"line 3 \(block 1\), column 'ETH': price must be positive"),
        ("ETH,BTC\n1,2\n0,2\n1,2\n", "price must be positive"),
        ("ETH,BTC\n1,2\n1,inf\n1,2\n", "price must be positive and finite"),
        ("ETH,BTC\n1,2\n,2\n1,2\n", r"column 'ETH': missing price"),
        ("ETH,BTC\n1,2\n1\n1,2\n", r"column 'BTC': missing price"),
        ("ETH,BTC\n1,abc\n1,2\n1,2\n", "not a number: 'abc'"),
        ("ETH\n1\n2\n3\n", "no column 'BTC'"),
        (
            "ETH,BTC\n1,2\n1,2\n",
            r"2 price rows \(blocks 0..1\) but the run needs 3 \(blocks 0..2\)",
        ),
        ("", "empty price file"),
    ],
)
def test_bad_csv_rejected(tmp_path, text, message):
    with pytest.raises(PricePathError, match=message):
        read_price_csv(write_csv(tmp_path, text), ["ETH", "BTC"], blocks=2)


def test_csv_kind_through_the_scenario(tmp_path):
    rows = "\n".join(f"{2500 - i},{60000 - 10 * i}" for i in range(41))
    path = write_csv(tmp_path, "ETH,BTC\n" + rows + "\n")
    s = load_scenario(TINY, ["price_path.kind=csv", f"price_path.csv_path={path}"])
    market = ExternalMarket.from_scenario(s, np.random.default_rng(0))
    assert market.price("ETH", 40) == 2460.0
    assert market.price_e8("BTC", 1) == 59990 * 10**8


# -- external market and impact ----------------------------------------------------------------


DEPTH = 10_000_000.0  # 1% depth of the flat test markets, USD


def flat_market(blocks=100, half_life=10.0, enabled=True, scale=(1.0, 1.0)) -> ExternalMarket:
    exo = np.tile([100.0, 1000.0], (blocks + 1, 1))
    return ExternalMarket(
        ["ETH", "BTC"],
        exo,
        [DEPTH, DEPTH],
        [half_life, half_life],
        flow_scale=scale,
        impact_enabled=enabled,
    )


def test_impact_moves_price_in_trade_direction_and_decays_by_half_after_half_life():
    m = flat_market()
    m.apply_trade("ETH", -DEPTH, block=5)  # selling the 1% depth
    assert m.price("ETH", 5) == 100.0  # felt from the next block
    assert m.price("ETH", 6) == pytest.approx(100.0 * math.exp(-0.01))
    assert m.impact("ETH", 16) == pytest.approx(math.expm1(-0.005))  # halved after 10 blocks
    assert m.impact("ETH", 26) == pytest.approx(math.expm1(-0.0025))
    assert m.price("BTC", 6) == 1000.0  # other market untouched
    m.apply_trade(1, 4 * DEPTH, block=30)  # a buy of four times the depth, market by index
    assert m.price("BTC", 31) == pytest.approx(1000.0 * math.exp(0.02))  # square root: 2%


def test_flows_add_up_before_the_square_root():
    m = flat_market(half_life=1e9)
    m.apply_trade("ETH", DEPTH, block=1)
    m.apply_trade("ETH", DEPTH, block=1)
    m.apply_trade("ETH", -DEPTH, block=2)
    assert m.flow_usd("ETH", 3) == pytest.approx(DEPTH)
    assert m.impact("ETH", 3) == pytest.approx(math.expm1(0.01))


def test_observed_prices_never_change():
    m = flat_market()
    before = m.price("ETH", 10)
    m.apply_trade("ETH", 1e6, block=10)  # affects block 11 on: fine
    with pytest.raises(PricePathError, match="already observed"):
        m.apply_trade("ETH", 1e6, block=9)
    assert m.price("ETH", 10) == before


def test_impact_disabled_ignores_trades():
    m = flat_market(enabled=False)
    m.apply_trade("ETH", -50e6, block=0)
    assert m.price("ETH", 1) == 100.0


def test_a_huge_sale_leaves_a_positive_price():
    m = flat_market()
    m.apply_trade("ETH", -1e12, block=3)  # 100,000 times the depth: log impact -3.16
    assert 0 < m.price("ETH", 4) == pytest.approx(100.0 * math.exp(-0.01 * math.sqrt(1e5)))


def test_non_finite_trade_rejected():
    m = flat_market()
    with pytest.raises(PricePathError, match="must be finite"):
        m.apply_trade("ETH", float("nan"), block=3)


@pytest.mark.parametrize("bad", [np.nan, -1.0, 0.0, np.inf])
def test_bad_exogenous_value_rejected_naming_market_and_block(bad):
    exo = np.tile([100.0, 1000.0], (11, 1))
    exo[7, 1] = bad
    with pytest.raises(PricePathError, match=r"market 'BTC', block 7"):
        ExternalMarket(["ETH", "BTC"], exo, [DEPTH, DEPTH], [1, 1])


def test_lookup_errors():
    m = flat_market(blocks=10)
    with pytest.raises(KeyError, match="SOL"):
        m.price("SOL", 0)
    with pytest.raises(IndexError, match="outside the price path"):
        m.price("ETH", 11)
    assert m.prices(0) == {"ETH": 100.0, "BTC": 1000.0}
    assert m.price_e8("ETH", 0) == 100 * 10**8
    assert isinstance(m.price_e8("ETH", 0), int)


def test_from_scenario_uses_scenario_impact_switch():
    s = load_scenario(TINY, ["run.endogenous_impact=false"])
    m = ExternalMarket.from_scenario(s, np.random.default_rng(0))
    p = m.exogenous[1, 0]
    m.apply_trade("ETH", -10e6, block=0)
    assert m.price("ETH", 1) == p
    with pytest.raises(ValueError, match="read-only"):
        m.exogenous[0, 0] = 1.0


# -- background demand ---------------------------------------------------------------------------


def test_background_demand_follows_the_crash():
    s = load_scenario(TINY)
    bg = BackgroundProfile.from_scenario(s)
    limit = s.chain.block_gas_limit
    start, end = s.crash.start_block, s.crash.end_block
    calm_gas, calm_fee = bg.at(0)
    assert calm_gas == int(s.background.base_utilization * limit)
    assert calm_fee == round(s.background.calm_priority_fee_gwei * 1e9)
    peak_gas, peak_fee = bg.at(start + s.background.ramp_blocks)
    assert peak_gas == int(s.background.crash_utilization * limit)
    assert peak_fee == round(s.background.crash_priority_fee_gwei * 1e9)
    assert bg.gas_demand(start - 1) == calm_gas
    # decays back after the crash, by half the excess per half-life
    half = end + int(s.background.decay_half_life_blocks)
    assert bg.utilization(half) == pytest.approx(
        s.background.base_utilization
        + (s.background.crash_utilization - s.background.base_utilization) / 2
    )


def test_background_demand_falls_as_base_fee_rises():
    s = load_scenario(TINY)
    bg = BackgroundProfile.from_scenario(s)
    ref = round(s.chain.initial_base_fee_gwei * 1e9)
    assert bg.gas_demand(0, ref) == bg.gas_demand(0)
    e = s.background.fee_elasticity
    assert bg.gas_demand(0, 4 * ref) == pytest.approx(bg.gas_demand(0) * 4**-e, rel=1e-6)


def test_crash_intensity_profile():
    x = crash_intensity(
        40, start_block=10, duration_blocks=20, ramp_blocks=4, decay_half_life_blocks=5
    )
    assert x[9] == 0 and x[12] == 0.5 and x[14] == 1 and x[29] == 1
    assert x[30] == 1 and x[35] == pytest.approx(0.5)
    assert (
        crash_intensity(
            40,
            start_block=10,
            duration_blocks=20,
            ramp_blocks=4,
            decay_half_life_blocks=5,
            enabled=False,
        ).sum()
        == 0
    )
