"""The dashboard (``liqsim viz``, sim/viz) without a browser: the live model built from the
dashboard's inputs, the replay of a run folder, the panels, and the command's user errors.
tests/test_viz_browser.py drives the served page in a real browser."""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main
from sim.scenario.loader import ConfigError
from sim.viz import server
from sim.viz.inputs import INPUTS, base_scenario, build_scenario, model_params, overrides_for
from sim.viz.live import DashboardModel
from sim.viz.panels import PANELS, key_figures, latest_liquidations, panel_png
from sim.viz.replay import ReplayModel

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "scenarios" / "tiny.toml"
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def finished_live() -> DashboardModel:
    model = DashboardModel(str(TINY), seed=1)
    while model.running:
        model.step()
    return model


# ------------------------------------------------------------------ inputs


def test_inputs_at_their_defaults_are_the_scenario_file():
    base = base_scenario(TINY)
    defaults = {i.name: i.current(base) for i in INPUTS}
    assert overrides_for(base, defaults) == []
    assert build_scenario(TINY, 1, defaults) == base


def test_changed_inputs_give_a_different_scenario():
    base = base_scenario(TINY)
    values = {
        "cross_fraction": 0.9,
        "liquidators": 3,
        "liquidator_mode": "takeover",
        "liquidator_capital_kusd": 250,
        "gas_limit_mgas": 20,
        "urgent_utilization": 1.2,
        "oracle_deviation": 0.01,
        "oracle_heartbeat_s": 600,
        "crash_scale": 2.0,
        "crash_duration_blocks": 10,
    }
    s = build_scenario(TINY, 1, values)
    assert s != base
    assert s.traders.cross_fraction == 0.9 and s.liquidators.count == 3
    assert s.liquidators.mode == "takeover" and s.liquidators.capital_usd == 250_000
    assert s.chain.block_gas_limit == 20_000_000 and s.background.urgent_utilization == 1.2
    assert s.oracle.deviation_threshold == 0.01 and s.oracle.heartbeat_s == 600
    assert s.crash.duration_blocks == 10
    assert [m.crash_fall for m in s.markets] == [2 * m.crash_fall for m in base.markets]


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown dashboard input"):
        build_scenario(TINY, 1, {"nope": 1})
    with pytest.raises(ConfigError, match="seed"):
        build_scenario(TINY, -1, {})


def test_model_params_fit_the_model_and_hold_the_scenario_values():
    params = model_params(TINY, seed=3)
    signature = inspect.signature(DashboardModel.__init__).parameters
    assert "kwargs" in signature  # SolaraViz passes every input by keyword
    assert params["scenario"] == str(TINY) and params["seed"]["value"] == 3
    for inp in INPUTS:
        widget = params[inp.name]
        if widget["type"] == "Select":
            assert widget["value"] in widget["values"]
        else:
            assert widget["min"] <= widget["value"] <= widget["max"], inp.name


@pytest.mark.parametrize("scenario", sorted((ROOT / "scenarios").glob("[!p]*.toml")))
def test_every_scenario_value_lies_on_its_slider_grid(scenario):
    """A slider snaps its value to min + k * step when the page loads: a value off the grid
    would silently change the run the page shows."""
    for name, widget in model_params(scenario).items():
        if isinstance(widget, dict) and "step" in widget:
            k = (widget["value"] - widget["min"]) / widget["step"]
            assert abs(k - round(k)) < 1e-6 and widget["value"] <= widget["max"], (name, widget)


# ------------------------------------------------------------------ live model


def test_a_step_is_one_block_and_adds_rows():
    model = DashboardModel(str(TINY), seed=1)
    snap = model.snapshot()
    assert snap.counter == "block 0 / 40" and snap.blocks.empty
    model.step()
    snap = model.snapshot()
    assert snap.counter == "block 1 / 40" and len(snap.blocks) == 1
    assert len(snap.waiting) == 1 and snap.priced_out is not None
    model.step()
    assert len(model.snapshot().blocks) == 2 and model.steps == 2


def test_a_live_run_at_the_defaults_is_the_recorded_run(finished_live, tiny_run):
    """Nothing the dashboard does changes the simulation: its tables are ``liqsim run``'s."""
    snap = finished_live.snapshot()
    assert not finished_live.running and snap.counter == "block 40 / 40"
    pd.testing.assert_frame_equal(snap.blocks, pd.read_parquet(tiny_run / "blocks.parquet"))
    recorded = pd.read_parquet(tiny_run / "liquidations.parquet")
    assert len(snap.liquidations) == len(recorded) > 0
    finished_live.step()  # past the end: nothing happens
    assert finished_live.snapshot().block == 40


def test_a_parameter_change_builds_another_run():
    a = DashboardModel(str(TINY), seed=1)
    b = DashboardModel(str(TINY), seed=1, cross_fraction=1.0, liquidators=2)
    assert a.scenario != b.scenario
    assert b.scenario.traders.cross_fraction == 1.0 and len(b.sim.wallets) > len(a.sim.wallets)


# ------------------------------------------------------------------ replay


def test_replay_steps_through_the_recorded_blocks(tiny_run):
    model = ReplayModel(tiny_run)
    assert model.snapshot().counter == "block 0 / 40" and model.markets == ["ETH", "BTC"]
    for _ in range(3):
        model.step()
    snap = model.snapshot()
    assert snap.counter == "block 3 / 40" and list(snap.blocks["block"]) == [0, 1, 2]
    model.seek(1000)
    assert model.block == 40 and not model.running
    assert len(model.snapshot().liquidations) == len(
        pd.read_parquet(tiny_run / "liquidations.parquet")
    )
    model.seek(-5)
    assert model.block == 0 and model.running


def test_replayed_priced_out_line_is_the_live_one(finished_live, tiny_run):
    """The blocks table's priced_out_txs gives replay the live model's priced-out total."""
    live = finished_live.snapshot().priced_out.sum(axis=1)
    replay = ReplayModel(tiny_run)
    replay.seek(replay.total)
    rebuilt = replay.snapshot().priced_out["all"]
    assert list(rebuilt) == list(live)


def test_replayed_mempool_is_the_live_one(finished_live, tiny_run):
    """The mempool's history rebuilt from the tables is what the live model saw."""
    live = finished_live.snapshot().waiting
    replay = ReplayModel(tiny_run)
    replay.seek(replay.total)
    rebuilt = replay.snapshot().waiting
    columns = sorted(set(live.columns) | set(rebuilt.columns))
    pd.testing.assert_frame_equal(
        live.reindex(columns=columns, fill_value=0),
        rebuilt.reindex(columns=columns, fill_value=0),
        check_dtype=False,
    )


def test_panels_draw_for_live_and_replay(finished_live, tiny_run):
    replay = ReplayModel(tiny_run)
    empty = replay.snapshot()
    replay.seek(30)
    for snap in (empty, replay.snapshot(), finished_live.snapshot()):
        for name in PANELS:
            assert panel_png(snap, name).startswith(PNG)
        assert key_figures(snap)
    latest = latest_liquidations(finished_live.snapshot())
    assert len(latest) > 0 and latest["block"].is_monotonic_decreasing


# ------------------------------------------------------------------ command line


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["viz", *argv])
    return code, capsys.readouterr().err


def test_cli_user_errors_exit_2_before_serving(capsys, tmp_path, tiny_run, monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("the server must not start on a user error")

    monkeypatch.setattr(server, "serve", no_server)
    code, err = _cli(capsys, str(tmp_path / "missing.toml"), "--no-browser")
    assert code == 2 and "missing.toml" in err and "not found" in err
    code, err = _cli(capsys, "--replay", str(tmp_path), "--no-browser")
    assert code == 2 and "not a liqsim run folder" in err and "--replay" in err
    code, err = _cli(capsys, "--replay", str(tmp_path / "nope"), "--no-browser")
    assert code == 2 and "not a folder" in err
    code, err = _cli(capsys, str(TINY), "--replay", str(tiny_run), "--no-browser")
    assert code == 2 and "not both" in err
    code, err = _cli(capsys, str(TINY), "--port", "70000", "--no-browser")
    assert code == 2 and "--port" in err
    code, err = _cli(capsys, str(TINY), "--seed", "-3", "--no-browser")
    assert code == 2 and "--seed" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _cli(capsys, str(TINY), "--port", str(port), "--no-browser")
    assert code == 2 and f"127.0.0.1:{port}" in err
    code, err = _cli(capsys, str(TINY), "--host", "no-such-host.invalid", "--no-browser")
    assert code == 2 and "--host" in err


def test_cli_without_the_viz_extra_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setattr(server, "missing_extra", lambda: ["solara"])
    code, err = _cli(capsys, str(TINY), "--port", "0", "--no-browser")
    assert code == 2 and "pip install -e '.[viz]'" in err


def test_cli_start_imports_no_dashboard():
    """``liqsim --help`` stays fast: solara and the viz package load only in ``liqsim viz``."""
    code = (
        "import sys, sim.cli; sim.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('solara', 'sim.viz', 'uvicorn'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
