"""Every cascade mechanism added for issue 11 has a scenario key that switches it off, and the
frictionless baseline does not depend on them: with gas, oracle lag, endogenous impact and the
liquidation rush off, switching every new mechanism off as well gives back the same run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.api import resolve_scenario
from sim.model import LiqSimModel

TINY = Path(__file__).resolve().parent.parent / "scenarios" / "tiny.toml"

# the frictions the experiments switch (sim/experiments/amplify.py)
FRICTIONLESS = (
    "run.gas_enabled=false",
    "run.oracle_lag_enabled=false",
    "run.endogenous_impact=false",
    "liquidators.count=1",
)

# the mechanisms of issue 11, each switched off by its key
MECHANISMS_OFF = {
    "background tips over several levels": "background.tip_tiers=1",
    "urgent demand driven by volatility": "background.urgent_utilization=0",
    "the chain's bots echoing ours": "background.activity_multiple=0",
    "background bids that did not get in queueing": "background.queue_blocks=0",
    "pre-London first-price market": "chain.fee_market=eip1559",
    "traders' tips from the fee history": "traders.tip_from_fee_history=false",
    "traders speeding up their own transactions": "traders.speed_up_after_blocks=0",
    "the oracle's gas estimator and bumping": "oracle.tip_from_fee_history=false",
    "liquidators' tips from the fee history": "liquidators.tip_from_fee_history=false",
    "arbitrageurs' tips from the fee history": "arbitrageurs.tip_from_fee_history=false",
    "liquidators taking positions over with finite capital": "liquidators.mode=close",
    "the robust mark price": "exchange.margin_price=index",
    "ETH depth thinning with volatility": "markets.0.depth_volatility_exponent=0",
    "BTC depth thinning with volatility": "markets.1.depth_volatility_exponent=0",
    "ETH book standing for the market's open interest": "markets.0.represented_open_interest_usd=0",
    "BTC book standing for the market's open interest": "markets.1.represented_open_interest_usd=0",
}

ECONOMIC_COLUMNS = {
    "transactions": ["block_number", "sender", "label", "status", "gas_used", "revert_reason"],
    "liquidations": None,  # every column
    "accounts": None,
}


def _tables(overrides: list[str], seed: int = 2) -> dict[str, pd.DataFrame]:
    model = LiqSimModel(resolve_scenario(TINY, overrides), seed=seed)
    model.run()
    return model.recorder.tables()


def _economic(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {}
    for name, columns in ECONOMIC_COLUMNS.items():
        frame = tables[name]
        out[name] = (frame if columns is None else frame[columns]).reset_index(drop=True)
    return out


@pytest.mark.parametrize("key", sorted(MECHANISMS_OFF.values()))
def test_each_switch_is_a_valid_scenario_key(key):
    resolve_scenario(TINY, [key])


def test_switching_every_mechanism_off_gives_back_the_frictionless_baseline():
    baseline = _economic(_tables(list(FRICTIONLESS)))
    all_off = _economic(_tables([*FRICTIONLESS, *MECHANISMS_OFF.values()]))
    assert len(baseline["transactions"]) > 0 and len(baseline["liquidations"]) > 0
    for name in ECONOMIC_COLUMNS:
        pd.testing.assert_frame_equal(baseline[name], all_off[name], obj=name)


def test_the_mechanisms_do_change_a_run_with_frictions():
    """The comparison above can fail: with gas friction on, the same switches change the run."""
    on = _economic(_tables([]))
    off = _economic(_tables(list(MECHANISMS_OFF.values())))
    assert not on["transactions"].equals(off["transactions"])
