"""liqsim phase: grid planning, the tipping-point finder, the heat map, resuming, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.api import resolve_scenario
from sim.cli import main
from sim.experiments import phase
from sim.experiments.common import RunOptions
from sim.scenario.loader import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
FAST = ["traders.count=6", "chain.backend=anvil"]
ONE_WORKER = RunOptions(workers=1, quiet=True)
X = phase.Axis("background.urgent_utilization", ("0", "1"))
Y = phase.Axis("markets.*.external_depth_usd", ("1000000", "46000000"))


def tiny(*extra: str):
    return resolve_scenario(TINY, [*FAST, *extra], 30)


# ------------------------------------------------------------------ planning


def test_plan_is_every_cell_times_arms_times_seeds():
    sc = tiny()
    specs = phase.plan(sc, X, Y, [1, 2], phase.Comparison())
    assert len(specs) == 2 * 2 * 2 * 2
    labels = {(s.label_dict[X.path], s.label_dict[Y.path], s.label_dict["arm"]) for s in specs}
    assert len(labels) == 8 and {a for *_, a in labels} == {"scenario", "comparison"}
    for s in specs:
        toml = s.scenario_toml
        frictionless = "gas_enabled = false" in toml and "oracle_lag_enabled = false" in toml
        assert frictionless == (s.label_dict["arm"] == "comparison")
    # markets.* sets every market; the typed label is the resolved value
    cell = next(s for s in specs if s.label_dict[Y.path] == 1_000_000.0)
    assert cell.scenario_toml.count("external_depth_usd = 1000000.0") == 2
    # the two arms of a cell pair the same seeds with different scenarios
    keys = {(s.label_dict["arm"], s.seed) for s in specs}
    assert keys == {(a, seed) for a in ("scenario", "comparison") for seed in (1, 2)}


def test_levels_mode_has_one_arm_and_user_comparison_is_applied():
    sc = tiny()
    assert len(phase.plan(sc, X, Y, [1], phase.parse_comparison(["none"]))) == 4
    own = phase.parse_comparison(["run.margin_mode_override=isolated"])
    specs = phase.plan(sc, X, Y, [1], own)
    comp = [s for s in specs if s.label_dict["arm"] == "comparison"]
    assert comp and all('margin_mode_override = "isolated"' in s.scenario_toml for s in comp)


@pytest.mark.parametrize(
    ("texts", "flag"),
    [
        (["none", "run.gas_enabled=false"], "--counterfactual"),
        (["run.gas_enabled"], "--counterfactual"),
    ],
)
def test_bad_comparison_names_the_flag(texts, flag):
    with pytest.raises(ConfigError, match=flag):
        phase.parse_comparison(texts)


def test_same_axis_twice_and_bad_values_name_their_flag():
    sc = tiny()
    with pytest.raises(ConfigError, match="--y"):
        phase.plan(sc, X, phase.Axis(X.path, ("0.5",)), [1], phase.Comparison())
    with pytest.raises(ConfigError, match=r"--x.*liquidators\.count"):
        phase.plan(sc, phase.Axis("liquidators.count", ("-1",)), Y, [1], phase.Comparison())
    with pytest.raises(ConfigError, match="--x"):
        phase.parse_axis("background.urgent_utilization=0,0", "--x")
    with pytest.raises(ConfigError, match=r"--x.*same number"):
        phase.plan(sc, phase.Axis(X.path, ("1", "1.0")), Y, [1], phase.Comparison())


# ------------------------------------------------------------------ tipping points


def test_first_crossing_and_stays_above():
    assert phase.first_crossing([0.9, 1.0, 1.2, 1.5], 1.1) == 2
    assert phase.first_crossing([math.nan, 1.2], 1.1) == 1
    assert phase.first_crossing([1.1, 1.0], 1.1) is None  # strictly above
    assert phase.stays_above([1.0, 1.2, math.nan, 1.3], 1, 1.1)
    assert not phase.stays_above([1.2, 0.9, 1.3], 0, 1.1)


def test_crossings_along_rows_and_columns_on_synthetic_grid():
    # rows: y in (a, b, c); columns: x in (1, 2, 3); a cascade that sets in earlier as y rises
    values = pd.DataFrame(
        [[1.0, 1.05, 1.3], [1.0, 1.4, 1.6], [1.5, 1.0, 1.7]],
        index=pd.Index(["a", "b", "c"], name="y"),
        columns=pd.Index([1, 2, 3], name="x"),
    )
    lows = pd.DataFrame(
        [[0.8, 0.9, 1.0], [0.8, 1.2, 1.4], [1.3, 0.8, 1.5]], values.index, values.columns
    )
    rows = phase.crossings(values, lows, 1.1, "row")
    assert [(c.at, c.first, c.stays_above) for c in rows] == [
        ("a", 3, True),
        ("b", 2, True),
        ("c", 1, False),  # 1.5, then 1.0: not a stable tipping point
    ]
    assert [c.first_ci for c in rows] == [None, 2, 1]  # row a: no lower bound above
    cols = phase.crossings(values, lows, 1.1, "column")
    assert [(c.at, c.first) for c in cols] == [(1, "c"), (2, "b"), (3, "a")]


def test_summary_is_ratio_of_arm_means_on_the_same_seeds():
    rows = []
    for seed, (s, c) in enumerate([(6.0, 4.0), (9.0, 6.0), (3.0, math.nan)], start=1):
        for arm, v in (("scenario", s), ("comparison", c)):
            rows.append({"px": 1, "py": 2, "arm": arm, "seed": seed, "state": "complete", "m": v})
    rows[-1]["state"] = "failed"
    rows.append({"px": 2, "py": 2, "arm": "scenario", "seed": 1, "state": "failed", "m": math.nan})
    rows.append({"px": 2, "py": 2, "arm": "comparison", "seed": 1, "state": "failed", "m": 1.0})
    res = pd.DataFrame(rows)
    x, y = phase.Axis("px", ("1", "2")), phase.Axis("py", ("2",))
    s = phase.summarize(res, x, y, "m", phase.Comparison())
    first = s.iloc[0]
    assert first["value"] == pytest.approx(15 / 10) and first["seeds"] == 2  # seed 3 unpaired
    assert first["difference"] == pytest.approx(2.5) and first["runs_failed"] == 1
    assert math.isnan(s.iloc[1]["value"]) and s.iloc[1]["seeds"] == 0  # missing cell


# ------------------------------------------------------------------ plot


def test_heatmap_is_written_with_missing_cells(tmp_path):
    summary = pd.DataFrame(
        {
            X.path: [0.0, 1.0, 0.0, 1.0],
            Y.path: [1e6, 1e6, 4.6e7, 4.6e7],
            "value": [0.9, 1.4, math.nan, 1.2],
            "seeds": [3, 3, 0, 2],
            "scenario_mean": [10.0, 14.0, math.nan, 12.0],
        }
    )
    path = phase.phase_plot(
        summary, X, Y, "liquidations", phase.Comparison(), 1.1, tmp_path / "p.png", "t"
    )
    assert path.is_file() and path.stat().st_size > 10_000
    levels = phase.phase_plot(
        summary, X, Y, "liquidations", phase.Comparison(()), None, tmp_path / "l.png", "t"
    )
    assert levels.is_file()


# ------------------------------------------------------------------ end to end


def test_phase_runs_resumes_and_reports(tmp_path):
    sc = tiny()
    out = tmp_path / "ph"
    first = phase.run_phase(sc, X, Y, [1], out, ONE_WORKER, argv="liqsim phase (test)")
    assert first.batch.executed == 8 and first.batch.skipped == 0
    for name in ("results.csv", "summary.csv", "report.md", "plots/phase.png", "experiment.json"):
        assert (out / name).is_file(), name
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 8 and (res["state"] == "complete").all()
    s = first.summary
    assert len(s) == 4 and (s["seeds"] == 1).all()
    for _, row in s.iterrows():
        cell = res[(res[X.path] == row[X.path]) & (res[Y.path] == row[Y.path])].set_index("arm")
        a, b = cell.loc["scenario", "liquidations"], cell.loc["comparison", "liquidations"]
        expected = a / b if b else math.nan
        assert np.isclose(row["value"], expected, equal_nan=True)
    report = (out / "report.md").read_text()
    assert "Tipping points" in report and "plots/phase.png" in report
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.parquet")}

    again = phase.run_phase(sc, X, Y, [1], out, ONE_WORKER)
    assert again.batch.executed == 0 and again.batch.skipped == 8
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    wider = phase.Axis(X.path, ("0", "1", "0.5"))
    third = phase.run_phase(sc, wider, Y, [1], out, ONE_WORKER)
    assert third.batch.executed == 4 and third.batch.skipped == 8
    assert json.loads((out / "experiment.json").read_text())["runs_executed"] == 4


def test_cli_phase_tiny(tmp_path, capsys):
    out = tmp_path / "c"
    argv = [
        "phase",
        str(TINY),
        "--x",
        "background.urgent_utilization=0,1",
        "--y",
        "markets.0.external_depth_usd=1000000,46000000",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--blocks",
        "30",
        "--set",
        "traders.count=4",
        "--chain-backend",
        "anvil",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Amplification per cell" in text and "(n=1)" in text
    assert len(pd.read_csv(out / "summary.csv")) == 4
    assert (out / "plots" / "phase.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--x", "background.urgent_utilization", "--y", "crash.duration_blocks=10"], "--x"),
        (["--x", "background.urgent_utilization=0,1", "--y", "crash.nope=1"], "crash.nope"),
        (
            ["--x", "crash.duration_blocks=10", "--y", "crash.duration_blocks=20"],
            "--y",
        ),
        (
            ["--x", "crash.duration_blocks=10", "--y", "liquidators.count=1", "--metric", "x"],
            "--metric",
        ),
        (
            [
                "--x",
                "crash.duration_blocks=10",
                "--y",
                "liquidators.count=1",
                "--counterfactual",
                "oops",
            ],
            "--counterfactual",
        ),
    ],
)
def test_cli_phase_user_errors_exit_2(extra, message, tmp_path, capsys):
    code = main(["phase", str(TINY), *extra, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_heat_map_colours_are_symmetric_in_the_ratio():
    """x k and / k get the same depth of colour; a cell at 0.99 beside one at 1.35 is pale,
    not the deepest blue."""
    norm = phase._norm(np.array([0.99, 1.35]), ratio=True)
    assert norm(1.35) == pytest.approx(1.0)
    assert norm(1 / 1.35) == pytest.approx(0.0)
    assert 0.45 < norm(0.99) < 0.5
    assert phase._norm(np.array([1.0]), ratio=True)(1.1) == pytest.approx(1.0)
    assert phase._norm(np.array([5.0]), ratio=False) is None
