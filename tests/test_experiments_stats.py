"""Statistics of the experiments: t quantiles, paired differences, ratio-of-means intervals,
and the capital-needed figure on hand-made paths."""

import math

import numpy as np
import pandas as pd
import pytest

from sim.experiments.metrics import capital_needed
from sim.experiments.stats import mean_ci, paired_difference, ratio_of_means, t_quantile
from sim.scenario.schema import load_scenario


@pytest.mark.parametrize(
    ("df", "q"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (1000, 1.9623)]
)
def test_t_quantile_matches_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=1e-4)


def test_paired_difference_t_interval_by_hand():
    treated, control = [3.0, 5.0, 4.0, 8.0], [1.0, 2.0, 2.0, 3.0]
    d = np.array(treated) - np.array(control)  # 2, 3, 2, 5
    iv = paired_difference(treated, control)
    half = 3.182446 * d.std(ddof=1) / 2
    assert iv.estimate == pytest.approx(3.0)
    assert (iv.low, iv.high) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-5)
    assert iv.n == 4


def test_one_seed_has_no_interval():
    iv = paired_difference([2.0], [1.0])
    assert iv.estimate == 1.0 and math.isnan(iv.low) and math.isnan(iv.high)
    assert "n/a" in iv.text()
    r = ratio_of_means([2.0], [1.0])
    assert r.estimate == 2.0 and math.isnan(r.low)


def test_ratio_of_means_bootstrap_is_paired_and_reproducible():
    base = [10.0, 20.0, 30.0, 40.0]
    treated = [2 * b for b in base]  # exactly 2x in every seed: every resample gives 2
    r = ratio_of_means(treated, base)
    assert (r.estimate, r.low, r.high) == pytest.approx((2.0, 2.0, 2.0))
    noisy = [12.0, 35.0, 61.0, 95.0]
    a, b = ratio_of_means(noisy, base), ratio_of_means(noisy, base)
    assert a == b  # fixed bootstrap seed
    assert a.low <= a.estimate <= a.high
    assert math.isnan(ratio_of_means([1.0, 2.0], [0.0, 0.0]).estimate)  # zero baseline: undefined


def test_mean_ci_ignores_nan():
    iv = mean_ci([1.0, float("nan"), 3.0])
    assert iv.n == 2 and iv.estimate == 2.0


def test_capital_needed_cross_nets_gains_against_losses():
    """One trader long ETH and short BTC; ETH falls 10% then BTC rises 10% (never together).

    ISOLATED needs each position's worst maintenance-minus-PnL; CROSS needs the worst of the sum,
    so it can net ETH's gain against BTC's loss."""
    sc = load_scenario("scenarios/tiny.toml")  # ETH, BTC: 5% initial, 3% maintenance
    eth = [100.0, 100.0, 90.0, 100.0, 100.0]
    btc = [100.0, 100.0, 100.0, 100.0, 110.0]
    blocks = pd.DataFrame(
        {"ETH_oracle_usd": eth, "BTC_oracle_usd": btc, "ETH_venue_usd": eth, "BTC_venue_usd": btc}
    )
    traders = pd.DataFrame(
        {
            "owner": ["a", "a"],
            "market_index": [0, 1],
            "direction": [1, -1],
            "intended_notional_usd": [1000.0, 1000.0],
            "entry_block": [1, 1],
            "holding_blocks": [10, 10],
        }
    )
    cross, isolated = capital_needed(traders, blocks, sc)
    # sizes 10 ETH, -10 BTC at 100. ETH at 90: need_eth = 0.03*900 + 100 = 127, need_btc = 30 -> 157
    # BTC at 110: need_eth = 30, need_btc = 0.03*1100 + 100 = 133 -> 163 (cross worst);
    # isolated 127 + 133
    assert cross == pytest.approx(163.0)
    assert isolated == pytest.approx(260.0)
    # initial margin binds when prices never move against the trader
    flat = pd.DataFrame({c: [100.0] * 5 for c in blocks.columns})
    assert capital_needed(traders, flat, sc) == pytest.approx((100.0, 100.0))
