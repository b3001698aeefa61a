"""Stylized facts read from an experiment folder's runs (``liqsim facts``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sim.api import run_scenario
from sim.cli import main
from sim.experiments.facts import (
    MARCH_2020,
    Run,
    facts_table,
    run_folders,
    worst_window_share,
)
from sim.scenario.loader import ConfigError

TINY = Path(__file__).resolve().parent.parent / "scenarios" / "tiny.toml"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """An experiment folder with one finished tiny run named like the March 2020 scenario and
    one run that is filtered out."""
    root = tmp_path_factory.mktemp("facts")
    for seed in (1, 2):
        run_scenario(
            TINY,
            seed=seed,
            out=root / "runs" / f"r{seed}",
            overrides=["name=march2020", "chain.fee_market=first_price"],
            counterfactual=False,
            plots=False,
        )
    pd.DataFrame(
        {
            "run.gas_enabled": [True, False],
            "seed": [1, 2],
            "run_folder": ["runs/r1", "runs/r2"],
            "state": ["complete", "complete"],
        }
    ).to_csv(root / "results.csv", index=False)
    return root


def test_facts_of_march2020_runs(experiment):
    folders = run_folders(experiment, {"run.gas_enabled": "true"})
    assert [f.name for f in folders] == ["r1"]
    table = facts_table(folders)
    assert list(table["fact"]) == [f.name for f in MARCH_2020]
    assert (table["runs"] <= 1).all() and table["source"].str.len().gt(0).all()
    run = Run.load(folders[0])
    share = MARCH_2020[0].measure(run)
    assert 0 <= share <= 1
    assert MARCH_2020[1].measure(run) > 0  # the gas price multiple


def test_worst_window_share_on_known_liquidations(experiment):
    run = Run.load(experiment / "runs" / "r1")
    liq = pd.DataFrame({"block": [1, 2, 39], "notional_usd": [100.0, 100.0, 200.0]})
    fake = Run(run.scenario, run.blocks, liq, run.transactions, run.exogenous, run.summary)
    # 10 minutes = 50 blocks covers all 40 blocks of tiny: everything is in the worst window
    assert worst_window_share(fake) == 1.0
    none = Run(run.scenario, run.blocks, liq.iloc[:0], run.transactions, run.exogenous, {})
    assert math.isnan(worst_window_share(none))


def test_facts_errors_name_the_input(experiment, tmp_path):
    with pytest.raises(ConfigError, match="--where"):
        run_folders(experiment, {"no.such.column": "1"})
    with pytest.raises(ConfigError, match=r"results\.csv"):
        run_folders(tmp_path, {})
    with pytest.raises(ConfigError, match="no finished runs"):
        facts_table([])


def test_facts_cli(experiment, tmp_path, capsys):
    out = tmp_path / "facts.md"
    assert main(["facts", str(experiment), "--where", "seed=2", "--out", str(out)]) == 0
    assert "share of full blocks in the fall" in capsys.readouterr().out
    assert out.read_text().startswith("| fact |")
    assert main(["facts", str(experiment), "--where", "seed"]) == 2
