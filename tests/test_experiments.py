"""liqsim compare / amplify / sweep on tiny scenarios: outputs, common random numbers,
resumability (counted runs), the Ray backend, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sim.api import resolve_scenario
from sim.cli import main
from sim.experiments import amplify, compare, sweep
from sim.experiments.common import RunOptions
from sim.experiments.metrics import run_metrics
from sim.experiments.runs import RunSpec, ray_available, run_all
from sim.experiments.stats import paired_difference, ratio_of_means
from sim.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
FAST = ["traders.count=6"]  # 30 blocks (crash 10..30), 6 traders: about a second per run
ONE_WORKER = RunOptions(workers=1, quiet=True)
TWO_WORKERS = RunOptions(workers=2, quiet=True)  # two spawned worker processes

ONE_MARKET = """
name = "one"
[run]
blocks = 25
[background]
ramp_blocks = 2
decay_half_life_blocks = 5.0
[crash]
start_block = 5
duration_blocks = 15
recovery_blocks = 5
[[markets]]
name = "ETH"
initial_price_usd = 2500.0
crash_fall = 0.25
[traders]
count = 5
markets_per_trader_max = 1
entry_window_blocks = 3
leverage_min = 8.0
stop_loss_adoption = 0.0
[liquidators]
count = 2
[arbitrageurs]
count = 1
"""


def tiny(*extra: str):
    return resolve_scenario(TINY, [*FAST, *extra], 30)


# ------------------------------------------------------------------ compare


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return compare.run_compare(tiny(), [1, 2], out, ONE_WORKER, argv="liqsim compare (test)")


def test_compare_writes_one_folder_with_tidy_tables(compared):
    out = compared.folder
    for name in (
        "experiment.json",
        "scenario.toml",
        "results.csv",
        "results.parquet",
        "summary.csv",
        "report.md",
        "plots/compare.png",
    ):
        assert (out / name).is_file(), name
    res = pd.read_parquet(out / "results.parquet")
    assert (
        len(res) == 4
        and set(res["arm"]) == {"cross", "isolated"}
        and sorted(res["seed"].unique()) == [1, 2]
    )
    assert (res["state"] == "complete").all()
    assert res[["arm", "seed"]].duplicated().sum() == 0  # one row per run
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["runs_executed"] == 4 and exp["state"] == "complete" and exp["crn_identical"] is True
    report = (out / "report.md").read_text()
    assert (
        "ISOLATED - CROSS" in report
        and "plots/compare.png" in report
        and "Capital needed" in report
    )


def test_compare_pairs_share_exogenous_prices_and_traders(compared):
    """Common random numbers: both arms of a seed see the same exogenous path and traders."""
    res, out = compared.results, compared.folder
    assert res["crn_prices_identical"].all() and res["crn_traders_identical"].all()
    for seed in (1, 2):
        rows = res[res["seed"] == seed].set_index("arm")
        cross, iso = out / rows.loc["cross", "run_folder"], out / rows.loc["isolated", "run_folder"]
        pd.testing.assert_frame_equal(
            pd.read_parquet(cross / "exogenous.parquet"), pd.read_parquet(iso / "exogenous.parquet")
        )
        tc, ti = (
            pd.read_parquet(cross / "traders.parquet"),
            pd.read_parquet(iso / "traders.parquet"),
        )
        assert set(tc["mode"]) == {"cross"} and set(ti["mode"]) == {"isolated"}
        pd.testing.assert_frame_equal(tc.drop(columns="mode"), ti.drop(columns="mode"))
        # the arms are really different runs
        assert (
            json.loads((cross / "manifest.json").read_text())["scenario_fingerprint"]
            != json.loads((iso / "manifest.json").read_text())["scenario_fingerprint"]
        )
    # a different seed has a different path
    r1 = out / res[(res["seed"] == 1) & (res["arm"] == "cross")]["run_folder"].iloc[0]
    r2 = out / res[(res["seed"] == 2) & (res["arm"] == "cross")]["run_folder"].iloc[0]
    assert not pd.read_parquet(r1 / "exogenous.parquet").equals(
        pd.read_parquet(r2 / "exogenous.parquet")
    )


def test_compare_summary_is_the_paired_difference_of_the_results(compared):
    res, summary = compared.results, compared.summary.set_index("figure")
    for fig in ("liquidations", "notional_usd", "trader_losses_usd", "capital_needed_usd"):
        wide = res.pivot(index="seed", columns="arm", values=fig)
        iv = paired_difference(wide["isolated"], wide["cross"])
        assert summary.loc[fig, "diff_mean"] == pytest.approx(iv.estimate)
        assert summary.loc[fig, "diff_ci_low"] == pytest.approx(iv.low)
        assert summary.loc[fig, "pairs"] == 2
    # contagion is a CROSS-only figure; ISOLATED capital need is never below CROSS on one path
    assert (res.loc[res["arm"] == "isolated", "contagion_positions"] == 0).all()
    assert (res["capital_needed_isolated_usd"] >= res["capital_needed_cross_usd"] - 1e-6).all()


def test_metrics_come_from_the_run_folder_alone(compared, tmp_path):
    """Analysis reads run folders: a copied folder gives the same metrics."""
    import shutil

    row = compared.results.iloc[0]
    src = compared.folder / row["run_folder"]
    shutil.copytree(src, tmp_path / "copy")
    a, b = run_metrics(src), run_metrics(tmp_path / "copy")
    assert a.keys() == b.keys()
    assert all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)
    assert a["liquidations"] == row["liquidations"]


# ------------------------------------------------------------------ amplify


@pytest.fixture(scope="module")
def amplified(tmp_path_factory):
    d = tmp_path_factory.mktemp("amplify")
    (d / "one.toml").write_text(ONE_MARKET)
    return amplify.run_amplify(
        load_scenario(d / "one.toml"), [1], d / "out", ONE_WORKER, short=True
    )


def test_amplify_design_is_baseline_singles_and_all_under_both_modes(amplified):
    res = amplified.results
    assert len(res) == 12 and (res["state"] == "complete").all()
    assert list(dict.fromkeys(res["cell"])) == [
        "baseline",
        "gas",
        "oracle_lag",
        "rush",
        "impact",
        "all",
    ]
    assert set(res["mode"]) == {"cross", "isolated"}
    base = res[res["cell"] == "baseline"].iloc[0]
    assert not (base["gas"] or base["oracle_lag"] or base["rush"] or base["impact"])
    assert res[res["cell"] == "all"][["gas", "oracle_lag", "rush", "impact"]].all().all()
    # the switches reached the runs
    for _, r in res.iterrows():
        sc = load_scenario(amplified.folder / r["run_folder"] / "scenario.toml")
        assert sc.run.gas_enabled == r["gas"] and sc.run.oracle_lag_enabled == r["oracle_lag"]
        assert sc.run.endogenous_impact == r["impact"]
        assert sc.liquidators.count == (2 if r["rush"] else 1)
        assert sc.liquidators.latency_blocks_max == (2 if r["rush"] else 0)
        assert sc.run.margin_mode_override == r["mode"]
    # gas-free cells burn no gas; the gas cell pays a base fee
    assert (res.loc[~res["gas"], "base_fee_max_gwei"] == 0).all()
    assert (res.loc[res["gas"], "base_fee_max_gwei"] > 0).all()


def test_amplification_factor_is_cell_over_baseline(amplified):
    res, s = amplified.results, amplified.summary
    for mode in ("cross", "isolated"):
        m = res[res["mode"] == mode].set_index("cell")
        for cell in ("gas", "all"):
            row = s[
                (s["cell"] == cell) & (s["mode"] == mode) & (s["figure"] == "liquidations")
            ].iloc[0]
            expected = ratio_of_means(
                [m.loc[cell, "liquidations"]], [m.loc["baseline", "liquidations"]]
            )
            assert row["factor"] == pytest.approx(expected.estimate, nan_ok=True)
            assert math.isnan(row["factor_ci_low"])  # one seed: no interval
    report = (amplified.folder / "report.md").read_text()
    assert "Amplification factor" in report and "plots/amplify.png" in report
    assert (amplified.folder / "plots" / "amplify.png").is_file()
    assert (amplified.folder / "plots" / "amplify_figures.png").is_file()


def test_full_factorial_has_sixteen_cells():
    cells = amplify.cells()
    assert len(cells) == 16 and len({amplify.cell_name(c) for c in cells}) == 16


# ------------------------------------------------------------------ sweep


def test_sweep_runs_in_parallel_and_resumes_without_recomputing(tmp_path):
    sc = tiny()
    grids = {"oracle.deviation_threshold": ["0.005", "0.02"]}
    first = sweep.run_sweep(sc, grids, [1], tmp_path / "s", TWO_WORKERS)
    assert first.batch.executed == 2 and first.batch.skipped == 0
    res = pd.read_csv(tmp_path / "s" / "results.csv")
    assert len(res) == 2 and sorted(res["oracle.deviation_threshold"]) == [0.005, 0.02]
    assert (tmp_path / "s" / "plots" / "sweep.png").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "runs").rglob("*.parquet")}

    again = sweep.run_sweep(sc, grids, [1], tmp_path / "s", TWO_WORKERS)
    assert again.batch.executed == 0 and again.batch.skipped == 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    pd.testing.assert_frame_equal(again.results, first.results)

    wider = {"oracle.deviation_threshold": ["0.005", "0.02", "0.05"]}
    third = sweep.run_sweep(sc, wider, [1], tmp_path / "s", ONE_WORKER)
    assert third.batch.executed == 1 and third.batch.skipped == 2
    assert json.loads((tmp_path / "s" / "experiment.json").read_text())["runs_executed"] == 1


def test_interrupted_run_is_redone(tmp_path):
    spec = RunSpec.of(tiny(), 3)
    run_all([spec], tmp_path, workers=1)
    status = tmp_path / spec.key / "status.json"
    status.write_text(json.dumps({"state": "running"}))  # as if killed mid-run
    assert run_all([spec], tmp_path, workers=1).executed == 1
    assert json.loads(status.read_text())["state"] == "complete"


def test_sweep_two_parameters_heatmap(tmp_path):
    sc = tiny()
    grids = {
        "oracle.deviation_threshold": ["0.005", "0.02"],
        "liquidators.latency_blocks_max": ["0", "3"],
    }
    out = sweep.run_sweep(sc, grids, [1], tmp_path / "h", TWO_WORKERS)
    assert len(out.summary) == 4 and out.batch.executed == 4
    assert (tmp_path / "h" / "plots" / "sweep.png").is_file()


@pytest.mark.skipif(not ray_available(), reason="ray is not installed (pip install -e '.[ray]')")
def test_sweep_on_a_local_ray_instance_matches_local_runs(tmp_path):
    sc = tiny()
    grids = {"liquidators.min_profit_usd": ["5", "50"]}
    on_ray_options = RunOptions(workers=2, backend="ray", quiet=True)
    on_ray = sweep.run_sweep(sc, grids, [1], tmp_path / "ray", on_ray_options)
    assert on_ray.batch.executed == 2 and (on_ray.results["state"] == "complete").all()
    local = sweep.run_sweep(sc, grids, [1], tmp_path / "local", TWO_WORKERS)
    for (_, a), (_, b) in zip(on_ray.results.iterrows(), local.results.iterrows(), strict=True):
        assert a["run_key"] == b["run_key"]
        ja = json.loads((tmp_path / "ray" / a["run_folder"] / "summary.json").read_text())
        jb = json.loads((tmp_path / "local" / b["run_folder"] / "summary.json").read_text())
        assert ja == jb  # same inputs to analysis whichever engine ran it
    # resumable on Ray too
    assert sweep.run_sweep(sc, grids, [1], tmp_path / "ray", on_ray_options).batch.executed == 0


# ------------------------------------------------------------------ command line


def test_cli_compare_tiny(tmp_path, capsys):
    out = tmp_path / "c"
    code = main(
        [
            "compare",
            str(TINY),
            "--seeds",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
            "--blocks",
            "30",
            "--set",
            "traders.count=4",
            "--quiet",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "ISOLATED - CROSS" in text and "CI n/a" in text  # one seed: no interval
    assert len(pd.read_csv(out / "results.csv")) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", str(TINY), "--grid", "oracle.deviation_threshold"], "--grid"),
        (["sweep", str(TINY), "--grid", "oracle.nope=1,2"], "oracle.nope"),
        (["sweep", str(TINY), "--grid", "liquidators.count=-1"], "liquidators.count"),
        (["sweep", str(TINY)], "at least one --grid"),
        (["compare", str(TINY), "--seeds", "0"], "--seeds"),
        (["amplify", str(TINY), "--workers", "0"], "--workers"),
        (["compare", "no/such/scenario.toml"], "not found"),
        (["stress", "no/such/positions.toml"], "not found"),
        (
            ["stress", str(ROOT / "scenarios" / "positions_example.toml"), "--moves", "-200%"],
            "--moves",
        ),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(argv, message, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not list((tmp_path / "x").glob("runs/*"))  # nothing ran


def test_ray_backend_without_ray_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(Exception, match=r"pip install 'liqsim\[ray\]'"):
        run_all([RunSpec.of(tiny(), 1)], tmp_path, backend="ray")


# ------------------------------------------------------------------ event scenarios


@pytest.mark.parametrize("name", ["march2020", "october2025"])
def test_event_scenarios_load_with_their_calibration(name):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    text = (ROOT / "scenarios" / f"{name}.toml").read_text()
    assert sc.name == name
    # the file points to docs/scenarios.md, whose section on it gives each value's source
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    heading = f"## `{name}.toml`"
    assert "docs/scenarios.md" in text and heading in docs
    section = docs.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "| source / choice |" in section
    falls = {m.name: m.crash_fall for m in sc.markets}
    if name == "march2020":
        assert falls["ETH"] == 0.5
        assert sc.chain.initial_base_fee_gwei * 6 == pytest.approx(80, rel=0.05)
        assert sc.oracle.deviation_threshold == 0.005 and sc.oracle.heartbeat_s == 3600
    else:
        assert (falls["BTC"], falls["ETH"], falls["SOL"]) == (0.12, 0.16, 0.31)
        assert sc.crash.duration_blocks * sc.run.block_time_s == 45 * 60
        large = {m.name: (m.initial_margin, m.maintenance_margin) for m in sc.markets}
        assert large["BTC"] == large["ETH"] == (0.02, 0.012)  # dYdX v4 large-cap tier
        assert sc.traders.markets_per_trader_max == 3
    # the whole crash, recovery included, happens inside the run, after a calm start
    crash = sc.crash
    assert crash.enabled and crash.start_block > 0
    assert crash.start_block + crash.duration_blocks + crash.recovery_blocks <= sc.run.blocks
