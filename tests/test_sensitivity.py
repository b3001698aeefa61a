"""liqsim sensitivity: SALib sampling and analysis on synthetic functions (no model runs), the
parameter ranges and their parser, and an end-to-end Morris run on the tiny scenario."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.api import resolve_scenario
from sim.cli import main
from sim.experiments import sensitivity as sens
from sim.experiments.design import resolved_value
from sim.scenario.loader import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"


def unit(*names: str) -> list[sens.ParamRange]:
    return [sens.ParamRange(n, 0.0, 1.0) for n in names]


# ------------------------------------------------------------------ synthetic functions


def test_morris_recovers_the_known_ranking_of_a_synthetic_function():
    params = unit("a", "b", "c", "d")
    design = sens.Design("morris", trajectories=20)
    x = sens.sample(params, design)
    assert x.shape == (20 * 5, 4)
    y = 10 * x[:, 0] + 3 * x[:, 1] ** 2 + 0 * x[:, 2] + 1 * x[:, 3]
    table, note = sens.analyze_morris(params, x, y, design)
    ranked = sens.rank(table, "morris")
    assert list(ranked["parameter"]) == ["a", "b", "d", "c"]
    by = ranked.set_index("parameter")
    assert by.loc["a", "mu_star"] == pytest.approx(10) and by.loc["a", "sigma"] == pytest.approx(0)
    assert by.loc["c", "mu_star"] == 0 and by.loc["b", "sigma"] > 0  # non-linear: spread
    assert note == "20 of 20 trajectories"


def test_morris_leaves_out_trajectories_with_an_undefined_figure():
    params = unit("a", "b")
    design = sens.Design("morris", trajectories=4)
    x = sens.sample(params, design)
    y = 5 * x[:, 0] + x[:, 1]
    y[4] = np.nan  # a point of the second trajectory (3 points each)
    table, note = sens.analyze_morris(params, x, y, design)
    assert note == "3 of 4 trajectories"
    assert table.set_index("parameter").loc["a", "mu_star"] == pytest.approx(5)


def test_sobol_recovers_variance_shares_of_a_linear_function():
    params = unit("a", "b", "c")
    design = sens.Design("sobol", samples=512)
    x = sens.sample(params, design)
    assert x.shape == (512 * 5, 3)
    y = 4 * x[:, 0] + 2 * x[:, 1]  # variance shares 16/20, 4/20, 0
    table, _ = sens.analyze_sobol(params, y, design)
    by = sens.rank(table, "sobol").set_index("parameter")
    assert list(by.index) == ["a", "b", "c"]
    assert by.loc["a", "S1"] == pytest.approx(0.8, abs=0.05)
    assert by.loc["b", "ST"] == pytest.approx(0.2, abs=0.05)
    assert abs(by.loc["c", "ST"]) < 0.02
    constant, note = sens.analyze_sobol(params, np.ones(len(x)), design)
    assert constant["ST"].isna().all() and "same at every point" in note


def test_ties_share_a_rank_and_undefined_indices_come_last():
    table = pd.DataFrame({"parameter": list("abcd"), "mu_star": [1.0, 3.0, 1.0, np.nan]})
    ranked = sens.rank(table, "morris")
    assert list(ranked["parameter"]) == ["b", "a", "c", "d"]
    assert list(ranked["rank"]) == [1, 2, 2, 4]


def test_sample_is_deterministic_for_a_design():
    params = unit("a", "b", "c")
    design = sens.Design("morris", trajectories=3)
    assert np.array_equal(sens.sample(params, design), sens.sample(params, design))
    other = sens.Design("morris", trajectories=3, seed=7)
    assert not np.array_equal(sens.sample(params, design), sens.sample(params, other))


# ------------------------------------------------------------------ parameters and their parser


@pytest.mark.parametrize(
    "text",
    ["background.urgent_utilization", "x=1", "x=a:2", "x=2:1", "x=1:1", "=0:1", "x=nan:1"],
)
def test_range_parser_rejects_bad_input_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--params"):
        sens.parse_range(text)


def test_ranges_are_checked_against_the_scenario():
    sc = resolve_scenario(TINY)
    assert sens.parse_range("markets.*.impact_half_life_blocks=10:90") == (
        "markets.*.impact_half_life_blocks",
        10.0,
        90.0,
    )
    for bad in (
        ["traders.nope=0:1"],
        ["run.gas_enabled=0:1"],  # not numeric
        ["background.urgent_utilization=-1:1"],  # outside the parameter's bounds
        ["traders.top_up_delay_blocks=1.2:1.4"],  # one integer
        ["background.tip_dispersion=0:1", "background.tip_dispersion=0:2"],
    ):
        with pytest.raises(ConfigError, match="--params"):
            sens.parse_ranges(sc, bad)


def test_default_ranges_hold_the_defaults_and_depend_on_liquidator_mode():
    sc = resolve_scenario(ROOT / "scenarios" / "default.toml")
    params = sens.default_ranges(sc)
    assert "liquidators.capital_usd" not in {p.path for p in params}
    for p in params:
        assert p.low <= resolved_value(sc, p.path) <= p.high, p.path
    takeover = sens.default_ranges(sc.with_overrides(["liquidators.mode=takeover"]))
    assert "liquidators.capital_usd" in {p.path for p in takeover}
    integers = {p.path for p in params if p.integer}
    assert integers == {"traders.speed_up_after_blocks", "traders.top_up_delay_blocks"}


def test_plan_rounds_integers_and_sets_every_market():
    sc = resolve_scenario(TINY)
    params = [
        sens.ParamRange("traders.top_up_delay_blocks", 0, 15, integer=True),
        sens.ParamRange("markets.*.impact_half_life_blocks", 10, 90),
    ]
    x, specs = sens.plan(sc, params, sens.Design("morris", trajectories=2), [1, 2])
    assert len(specs) == len(x) * 2 == 2 * 3 * 2
    for spec in specs:
        row = x[spec.label_dict["point"]]
        assert f"top_up_delay_blocks = {round(row[0])}\n" in spec.scenario_toml
        assert spec.scenario_toml.count(f"impact_half_life_blocks = {float(row[1])!r}") == 2


# ------------------------------------------------------------------ end to end


def test_cli_sensitivity_tiny_two_trajectories_resumes(tmp_path, capsys):
    out = tmp_path / "s"
    argv = [
        "sensitivity",
        str(TINY),
        "--method",
        "morris",
        "--trajectories",
        "2",
        "--params",
        "background.urgent_utilization=0.2:1.2",
        "markets.*.impact_half_life_blocks=10:90",
        "traders.top_up_delay_blocks=0:15",
        "--metrics",
        "liquidations,notional_usd",
        "--blocks",
        "30",
        "--set",
        "traders.count=6",
        "--chain-backend",
        "anvil",
        "--workers",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "mu*" in capsys.readouterr().out
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * 3 and set(summary["metric"]) == {"liquidations", "notional_usd"}
    assert (summary.groupby("metric")["rank"].min() == 1).all()
    assert len(pd.read_csv(out / "sample.csv")) == 8
    assert len(pd.read_csv(out / "results.csv")) == 8
    assert (out / "plots" / "sensitivity.png").is_file()
    assert "Morris" in (out / "report.md").read_text()
    assert main(argv) == 0  # resumed: nothing reruns
    assert json.loads((out / "experiment.json").read_text())["runs_executed"] == 0


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--params", "background.urgent_utilization=1"], "--params"),
        (["--samples", "8"], "--samples"),
        (["--method", "sobol", "--samples", "6"], "--samples"),
        (["--method", "sobol", "--trajectories", "4"], "--trajectories"),
        (["--trajectories", "1"], "--trajectories"),
        (["--metrics", "nope"], "--metrics"),
    ],
)
def test_cli_sensitivity_user_errors_exit_2(extra, flag, tmp_path, capsys):
    code = main(["sensitivity", str(TINY), *extra, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
