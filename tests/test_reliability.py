"""Nothing lost, nothing misleading (docs/reliability.md): user errors exit 2 with one message
before any set-up; a run folder never lies (occupied --out, --force, SIGINT, SIGTERM, kill -9,
disk full, read-only folder, death of the EVM backend); experiment folders likewise; the demo
reports what happened.

In-process runs go through ``sim.cli.main`` on a 20-block tiny scenario; real signals are sent
to this process (the CLI's handlers are installed while ``main`` runs) or to a child process.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from sim import api
from sim.cli import main
from sim.model import LiqSimModel
from sim.output import runfolder
from sim.output.runfolder import folder_state, partial_path
from sim.scenario.loader import iter_params
from sim.scenario.schema import MAX_BLOCKS, Scenario, check_price_path, load_scenario
from sim.stress.positions import AccountEntry, PositionEntry, PositionsFile

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
POSITIONS = ROOT / "scenarios" / "positions_example.toml"
SHORT = [
    "--blocks",
    "20",
    "--set",
    "crash.start_block=5",
    "--set",
    "crash.duration_blocks=10",
    "--set",
    "traders.count=4",
    "--quiet",
    "--no-counterfactual",
]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run(capsys, out: Path, *extra: str, seed: int = 1) -> tuple[int, str, str]:
    return cli(capsys, "run", TINY, "--seed", str(seed), "--out", out, *SHORT, *extra)


def status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def leftovers(root: Path) -> list[Path]:
    """Temporary files and unfinished folders anywhere under ``root``."""
    return [p for p in root.rglob(".*") if p.name.endswith((".tmp", ".partial"))]


def at_block(monkeypatch, block: int, action) -> None:
    """Call ``action(model)`` at the start of step ``block`` (0-based) of every model."""
    real_step = LiqSimModel.step

    def step(self):
        if self.block == block:
            action(self)
        real_step(self)

    monkeypatch.setattr(LiqSimModel, "step", step)


def send(signum: int):
    return lambda _model: os.kill(os.getpid(), signum)


# ------------------------------------------------------------------ every number is bounded


def _numeric_leaves(cls):
    for path, _, info in iter_params(cls):
        if info is not None and info.type.split(" ")[0] in ("int", "float"):
            yield path, info


@pytest.mark.parametrize("schema", [Scenario, PositionsFile, AccountEntry, PositionEntry])
def test_every_number_of_the_schemas_has_a_lower_and_an_upper_bound(schema):
    for path, info in _numeric_leaves(schema):
        assert any(op in info.bounds for op in (">", ">=")), f"{path} has no lower bound"
        assert "<" in info.bounds, f"{path} has no upper bound"


def test_the_limits_are_stated_in_the_parameter_docs():
    doc = (ROOT / "docs" / "parameters.md").read_text()
    for row in ("`run.blocks`", "`traders.count`", "`liquidators.count`", "`arbitrageurs.count`"):
        line = next(line for line in doc.splitlines() if line.startswith(f"| {row}"))
        assert "<=" in line, line
    assert f"<= {MAX_BLOCKS:_}" in doc


def test_preflight_draws_the_price_path_the_model_draws():
    """check_price_path draws the seed's path exactly as a run does (same numpy stream)."""
    import numpy as np

    from sim.scenario.pricepath import exogenous_paths

    sc = load_scenario(TINY)
    stream = np.random.SeedSequence(7).spawn(1)[0]
    model = LiqSimModel(sc, 7)
    try:
        np.testing.assert_array_equal(
            exogenous_paths(sc, np.random.default_rng(stream)), model.external.exogenous
        )
    finally:
        api._release(model)
    check_price_path(sc, 7)


# ------------------------------------------------------------------ user errors: exit 2


def _garbage(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    return path


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", TINY, "--seed", "-1"], "--seed: must be between 0 and 2**63 - 1"),
        (["run", TINY, "--seed", str(2**63)], "--seed"),
        (["run", TINY, "--blocks", "1000000000000"], "--blocks: must be between 1 and 100_000"),
        (["run", TINY, "--blocks", "0"], "--blocks"),
        (
            ["run", TINY, "--set", "markets.0.initial_price_usd=1e300"],
            "markets.0.initial_price_usd: must be between 1e-06 and 1_000_000_000",
        ),
        (["run", TINY, "--set", "markets.0.initial_price_usd=nan"], "initial_price_usd"),
        (["run", TINY, "--set", "markets.0.initial_price_usd=inf"], "finite"),
        (["run", TINY, "--set", "markets.0.initial_price_usd=0"], "initial_price_usd"),
        (["run", TINY, "--set", "traders.count=1000000000"], "between 0 and 5000"),
        (["run", TINY, "--set", "liquidators.count=101"], "between 0 and 100"),
        (["run", TINY, "--set", "arbitrageurs.count=51"], "between 0 and 50"),
        (["run", TINY, "--set", f"traders.count={10**40}"], "traders.count"),
        (["run", TINY, "--set", "traders.count=" + "9" * 5000], "traders.count"),
        (["run", TINY, "--set", "name=''"], "name: must be 1 to 64"),
        (["run", TINY, "--set", "name=../../etc"], "name"),
        (["run", TINY, "--set", "description=\udcff"], "not valid UTF-8"),
        (["run", TINY, "--set", "markets.0.name=''"], "markets.0.name"),
        (["run", TINY, "--set", "chain.block_gas_limit=1000"], "chain.block_gas_limit"),
        (
            [
                "run",
                TINY,
                "--set",
                "markets.0.initial_margin=0.0300004",
                "--set",
                "markets.0.maintenance_margin=0.0300001",
            ],
            "parts per million",
        ),
        (
            [
                "run",
                TINY,
                "--set",
                "price_path.kind='csv'",
                "--set",
                'price_path.csv_path="a\\u0000b"',
            ],
            "NUL",
        ),
        (
            [
                "run",
                TINY,
                "--blocks",
                "100000",
                "--set",
                "crash.enabled=false",
                "--set",
                "run.block_time_s=3600",
                "--set",
                "markets.0.volatility_annual=10",
            ],
            "outside [1e-06, 1e+09] USD",
        ),
        (["run", "/dev/zero"], "not a regular file"),
        (["run", ROOT / "scenarios"], "it is a folder"),
        (["run", TINY, "--set", "run.blocks=[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"], "run.blocks"),
        (["run", TINY, "--set", "run.blocks=" + "[" * 50_000 + "]" * 50_000], "run.blocks"),
        (["demo", "--crash", "nan"], "--crash"),
        (["demo", "--crash", "1"], "--crash"),
        (["demo", "--crash", "-0.1"], "--crash"),
        (["compare", TINY, "--seeds", "100000"], "--seeds: must be between 1 and 10_000"),
        (["compare", TINY, "--seed-start", "-1"], "--seed-start"),
        (["amplify", TINY, "--workers", "100000"], "--workers"),
        (["sweep", TINY, "--grid", "traders.count=1,2", "--seeds", "6000"], "at most 10_000"),
        (["sweep", TINY, "--grid", "oracle.heartbeat_s=1", "--figures", "nope"], "--figures"),
        (["stress", POSITIONS, "--markets", "DOGE"], "--markets"),
    ],
)
def test_user_errors_exit_2_with_one_message(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, *argv, *([] if argv[0] == "demo" else ["--out", out]))
    assert code == 2, err
    assert needle in err, err
    assert err.startswith("liqsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "liqsim demo" not in stdout
    assert not out.exists() and not partial_path(out).exists()  # nothing written


@pytest.mark.parametrize("what", ["scenario", "positions", "price csv"])
def test_binary_garbage_files_are_a_clean_error(what, tmp_path, capsys):
    garbage = _garbage(tmp_path, "garbage.toml")
    if what == "scenario":
        argv = ["run", garbage]
    elif what == "positions":
        argv = ["stress", garbage]
    else:
        argv = [
            "run",
            TINY,
            "--set",
            "price_path.kind=csv",
            "--set",
            f"price_path.csv_path={garbage}",
        ]
    code, _, err = cli(capsys, *argv, "--out", tmp_path / "out")
    assert code == 2 and "UTF-8" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("kind", ["a file", "under a file", "occupied", "not liqsim"])
def test_unusable_out_is_refused_before_anything(kind, tmp_path, capsys):
    target = tmp_path / "target"
    if kind == "a file":
        target.write_text("x")
        out, needle = target, "exists and is not a folder"
    elif kind == "under a file":
        target.write_text("x")
        out, needle = target / "run", "is a file, not a folder"
    elif kind == "occupied":
        target.mkdir()
        (target / "status.json").write_text('{"state": "complete"}')
        out, needle = target, "already exists; pass --force"
    else:
        target.mkdir()
        (target / "thesis.tex").write_text("precious")
        out, needle = target, "not a liqsim folder"
    extra = ["--force"] if kind == "not liqsim" else []
    code, _, err = cli(capsys, "run", TINY, "--out", out, *extra)
    assert code == 2 and needle in err, err
    if kind == "not liqsim":
        assert (target / "thesis.tex").read_text() == "precious"


def test_user_errors_are_found_before_any_heavy_import(tmp_path):
    """The checks need no model, chain or web3: the process never imports them."""
    (tmp_path / "file").write_text("x")
    script = textwrap.dedent(
        f"""
        import json, sys
        from sim.cli import main
        cases = [
            ["run", {str(TINY)!r}, "--seed", "-1"],
            ["run", {str(TINY)!r}, "--out", {str(tmp_path / "file")!r}],
            ["run", {str(TINY)!r}, "--set", "traders.count=99999"],
            ["compare", {str(TINY)!r}, "--out", {str(tmp_path / "file")!r}],
            ["stress", {str(POSITIONS)!r}, "--out", {str(tmp_path / "file")!r}],
        ]
        codes = [main(c) for c in cases]
        heavy = [m for m in ("sim.model", "sim.api", "web3", "eth_tester") if m in sys.modules]
        print(json.dumps({{"codes": codes, "heavy": heavy}}))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2, 2, 2, 2, 2], "heavy": []}, r.stderr


def test_check_validates_without_running(tmp_path, capsys):
    code, out, _ = cli(capsys, "run", TINY, "--out", tmp_path / "r", "--check")
    assert code == 0 and "OK" in out and not (tmp_path / "r").exists()
    code, out, _ = cli(
        capsys,
        "sweep",
        TINY,
        "--grid",
        "oracle.heartbeat_s=60,120",
        "--seeds",
        "2",
        "--out",
        tmp_path / "s",
        "--check",
    )
    assert code == 0 and "4 runs planned" in out and not (tmp_path / "s").exists()
    code, out, _ = cli(capsys, "stress", POSITIONS, "--out", tmp_path / "t", "--check")
    assert code == 0 and "OK" in out and not (tmp_path / "t").exists()


# ------------------------------------------------------------------ occupied --out, --force


def test_existing_out_is_refused_and_force_replaces_it_whole(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(capsys, out)[0] == 0
    assert status(out) == {"state": "complete", "seed": 1, "blocks_completed": 20}
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    code, _, err = run(capsys, out, seed=2)
    assert code == 2 and "already exists" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # untouched

    assert run(capsys, out, "--force", seed=2)[0] == 0
    assert status(out)["seed"] == 2
    assert json.loads((out / "manifest.json").read_text())["seed"] == 2
    assert leftovers(tmp_path) == []


def test_a_replacing_run_that_is_interrupted_never_mixes_two_runs(tmp_path, capsys, monkeypatch):
    """The issue's 'folder that lies': seed 1 complete, then seed 2 --force, interrupted."""
    out = tmp_path / "r"
    assert run(capsys, out)[0] == 0
    at_block(monkeypatch, 6, send(signal.SIGTERM))
    code, _, err = run(capsys, out, "--force", seed=2)
    assert code == 128 + signal.SIGTERM and "interrupted" in err
    st = status(out)
    assert st["state"] == "interrupted" and st["signal"] == "SIGTERM" and st["seed"] == 2
    assert not (out / "summary.json").exists() and not (out / "manifest.json").exists()
    assert not (out / "plots").exists() and not (out / "timing.json").exists()
    blocks = pd.read_parquet(out / "blocks.parquet")
    assert len(blocks) == st["blocks_completed"] == st["tables_blocks"]
    assert 6 <= len(blocks) <= 7  # stopped at the first block boundary after the signal
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ signals, kill -9


def test_sigint_in_process_ends_interrupted_with_its_tables(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(api, "CHECKPOINT_BLOCKS", 5)
    out = tmp_path / "r"
    at_block(monkeypatch, 12, send(signal.SIGINT))
    code, _, _ = run(capsys, out)
    assert code == 130
    st = status(out)
    assert st["state"] == "interrupted" and st["signal"] == "SIGINT"
    tables = runfolder.read_tables(out)
    assert len(tables["blocks"]) == st["blocks_completed"]
    assert tables["transactions"]["block_number"].max() <= tables["blocks"]["chain_block"].max()


def _child(out: Path, blocks: int = 600) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "sim.cli",
        "run",
        str(TINY),
        "--out",
        str(out),
        "--quiet",
        "--no-counterfactual",
        "--blocks",
        str(blocks),
        "--set",
        "crash.start_block=100",
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_a_running_process_keeps_its_checkpointed_tables(tmp_path, signum):
    out = tmp_path / "r"
    proc = _child(out)
    _wait_for(partial_path(out) / "blocks.parquet", proc)  # the first checkpoint (block 100)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    st = status(out)
    assert st["state"] == "interrupted" and st["signal"] == signal.Signals(signum).name
    assert st["blocks_completed"] >= 100
    assert len(pd.read_parquet(out / "blocks.parquet")) == st["blocks_completed"]
    assert leftovers(tmp_path) == []
    assert folder_state(out).state == "interrupted"


def test_kill_9_is_detectable_afterwards(tmp_path, capsys):
    out = tmp_path / "r"
    proc = _child(out)
    _wait_for(partial_path(out) / "blocks.parquet", proc)
    running = folder_state(out)
    assert running.state == "running" and running.status["pid"] == proc.pid
    proc.kill()
    proc.wait(timeout=60)
    assert not out.exists()  # --out never held an unfinished run
    state = folder_state(out)
    assert state.state == "stale" and state.where == partial_path(out)
    assert state.status["blocks_completed"] >= 100
    assert len(pd.read_parquet(partial_path(out) / "blocks.parquet")) >= 100  # checkpoint kept

    code, text, _ = cli(capsys, "status", out)
    assert code == 1 and "stale" in text and "killed" in text
    code, _, err = run(capsys, out)
    assert code == 2 and "killed" in err and "--force" in err
    assert run(capsys, out, "--force")[0] == 0
    assert status(out)["state"] == "complete" and leftovers(tmp_path) == []


def test_a_folder_another_live_process_writes_is_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "r"
    proc = _child(out)
    try:
        _wait_for(partial_path(out) / "status.json", proc)
        code, _, err = run(capsys, out, "--force")
        assert code == 2 and f"pid {proc.pid}" in err
    finally:
        proc.kill()
        proc.wait(timeout=60)


# ------------------------------------------------------------------ disk full, read-only, EVM


def _failing_parquet(monkeypatch, err: OSError, from_block: int) -> None:
    """DataFrame.to_parquet fails with ``err`` from step ``from_block`` of the model on."""
    real = pd.DataFrame.to_parquet
    armed = {"on": False}

    def to_parquet(self, path, *args, **kwargs):
        if armed["on"]:
            raise err
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    at_block(monkeypatch, from_block, lambda _m: armed.update(on=True))


@pytest.mark.parametrize(
    ("err", "needle"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (PermissionError(errno.EACCES, "Permission denied"), "not writable"),
        (OSError(errno.EROFS, "Read-only file system"), "not writable"),
    ],
)
def test_disk_full_or_read_only_mid_run_keeps_the_last_checkpoint(
    err, needle, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(api, "CHECKPOINT_BLOCKS", 5)
    _failing_parquet(monkeypatch, err, from_block=8)  # the checkpoint of block 5 succeeds
    out = tmp_path / "r"
    code, _, stderr = run(capsys, out)
    assert code == 1 and needle in stderr and "Traceback" not in stderr, stderr
    st = status(out)
    assert st["state"] == "incomplete" and st["cause"] == "output" and needle in st["error"]
    assert st["tables_blocks"] == 5 and st["blocks_completed"] == 10
    assert len(pd.read_parquet(out / "blocks.parquet")) == 5  # the whole first checkpoint
    assert len(pd.read_parquet(out / "accounts.parquet")) > 0
    assert leftovers(tmp_path) == []  # no .tmp file, no .partial folder


def test_when_not_even_the_status_can_be_written_the_folder_stays_partial(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(api, "CHECKPOINT_BLOCKS", 5)
    real = runfolder._atomic
    armed = {"on": False}

    def atomic(path, write):
        if armed["on"]:
            raise runfolder.OutputWriteError(path, OSError(errno.ENOSPC, "No space left"))
        return real(path, write)

    monkeypatch.setattr(runfolder, "_atomic", atomic)
    _failing_parquet(monkeypatch, OSError(errno.ENOSPC, "No space left"), from_block=8)
    real_step = LiqSimModel.step

    def step(self):
        if self.block == 8:
            armed["on"] = True
        real_step(self)

    monkeypatch.setattr(LiqSimModel, "step", step)
    out = tmp_path / "r"
    code, _, err = run(capsys, out)
    assert code == 1 and "disk is full" in err and str(partial_path(out)) in err
    assert not out.exists()
    state = folder_state(out)  # written by this (still living) process: counts as gone
    assert state.state == "stale" and len(pd.read_parquet(state.where / "blocks.parquet")) == 5


def test_read_only_out_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, _, err = run(capsys, tmp_path / "ro" / "r")
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1


def test_death_of_the_evm_backend_is_a_clear_failure(tmp_path, capsys, monkeypatch):
    from sim.chain.backend import ChainError, PyEVMBackend

    monkeypatch.setattr(api, "CHECKPOINT_BLOCKS", 5)
    dead = {"now": False}
    real_mine = PyEVMBackend.mine_block

    def mine_block(self, *args, **kwargs):
        if dead["now"]:
            raise ChainError("py-evm backend died")
        return real_mine(self, *args, **kwargs)

    monkeypatch.setattr(PyEVMBackend, "mine_block", mine_block)
    at_block(monkeypatch, 7, lambda _m: dead.update(now=True))  # dies inside block 7
    out = tmp_path / "r"
    code, _, err = run(capsys, out)
    assert code == 1 and "the run failed after 7 blocks" in err and "backend died" in err
    assert "Traceback" not in err
    st = status(out)
    assert st["state"] == "incomplete" and st["cause"] == "simulation"
    assert "ChainError: py-evm backend died" in st["error"]
    assert "ChainError" in (out / "traceback.txt").read_text()
    tables = runfolder.read_tables(out)
    assert len(tables["blocks"]) == st["blocks_completed"] == 7  # block 7 never completed
    assert (tables["liquidations"]["block"] < 7).all()
    last_chain_block = tables["blocks"]["chain_block"].max()
    assert (tables["transactions"]["block_number"] <= last_chain_block).all()


# ------------------------------------------------------------------ experiment folders


EXP = ["--seeds", "1", "--workers", "1", *SHORT[: SHORT.index("--quiet") + 1]]


def test_experiment_out_of_another_command_is_refused_unless_force(tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"command": "sweep", "state": "complete"}))
    code, _, err = cli(capsys, "compare", TINY, "--out", out, *EXP)
    assert code == 2 and "holds a 'sweep' experiment" in err
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "compare", TINY, "--out", tmp_path / "plain", "--force", *EXP)
    assert code == 2 and "not a liqsim folder" in err
    assert (tmp_path / "plain" / "notes.txt").exists()


def test_interrupted_experiment_says_so_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "e"
    models = {"n": 0}
    real_init = LiqSimModel.__init__

    def counting_init(self, *args, **kwargs):
        models["n"] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(LiqSimModel, "__init__", counting_init)
    at_block(monkeypatch, 8, lambda _m: models["n"] == 2 and os.kill(os.getpid(), signal.SIGTERM))
    code, _, err = cli(capsys, "compare", TINY, "--out", out, *EXP)
    assert code == 143 and "rerun the same command to resume" in err
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["state"] == "interrupted" and exp["signal"] == "SIGTERM" and "pid" not in exp
    assert not (out / "results.csv").exists() and not (out / "report.md").exists()
    states = sorted(status(p)["state"] for p in (out / "runs").iterdir())
    assert states == ["complete", "interrupted"]
    assert leftovers(out) == []
    assert folder_state(out).state == "interrupted"

    monkeypatch.undo()
    code, text, _ = cli(capsys, "compare", TINY, "--out", out, *EXP)
    assert code == 0 and "1 runs executed, 1 reused" in text
    assert json.loads((out / "experiment.json").read_text())["state"] == "complete"
    assert (out / "report.md").exists()


def test_an_experiment_killed_outright_is_stale_and_resumes(tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (out / "experiment.json").write_text(
        json.dumps(
            {
                "command": "compare",
                "state": "running",
                "pid": int(dead.stdout),
                "host": socket.gethostname(),
            }
        )
    )
    (out / "report.md").write_text("from the killed invocation")
    assert folder_state(out).state == "stale"
    code, _, _ = cli(capsys, "compare", TINY, "--out", out, *EXP)
    assert code == 0 and json.loads((out / "experiment.json").read_text())["state"] == "complete"
    assert "killed invocation" not in (out / "report.md").read_text()


def test_sigterm_to_a_parallel_experiment_stops_every_worker_cleanly(tmp_path):
    out = tmp_path / "sw"
    cmd = [
        sys.executable,
        "-m",
        "sim.cli",
        "sweep",
        str(TINY),
        "--grid",
        "oracle.deviation_threshold=0.005,0.02",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--blocks",
        "600",
        "--set",
        "crash.start_block=100",
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while not list((out / "runs").glob(".*.partial/blocks.parquet")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert json.loads((out / "experiment.json").read_text())["state"] == "interrupted"
    runs = list((out / "runs").iterdir())
    assert runs and all(status(r)["state"] in ("interrupted", "complete") for r in runs)
    assert leftovers(out) == []


def test_mark_ended_touches_only_this_process_running_folder(tmp_path):
    from sim.experiments.common import mark_ended

    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({"state": "running", "pid": os.getpid() + 1}))
    mark_ended(tmp_path, "interrupted")
    assert json.loads(path.read_text())["state"] == "running"
    path.write_text(json.dumps({"state": "running", "pid": os.getpid(), "host": "h"}))
    mark_ended(tmp_path, "interrupted", signal="SIGTERM")
    assert json.loads(path.read_text()) == {"state": "interrupted", "signal": "SIGTERM"}


# ------------------------------------------------------------------ stress, demo


def test_stress_folder_is_complete_or_absent(tmp_path, capsys, monkeypatch):
    out = tmp_path / "st"
    code, _, _ = cli(capsys, "stress", POSITIONS, "--moves", "-10%", "--out", out)
    assert code == 0 and status(out)["state"] == "complete" and (out / "report.md").exists()
    code, _, err = cli(capsys, "stress", POSITIONS, "--moves", "-10%", "--out", out)
    assert code == 2 and "already exists" in err

    from sim.stress import driver

    def boom(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "drive", boom)
    code, _, _ = cli(capsys, "stress", POSITIONS, "--out", tmp_path / "st2")
    assert code == 130 and not (tmp_path / "st2").exists() and leftovers(tmp_path) == []


def test_demo_reports_what_actually_happened(capsys):
    from sim.demo import conclusions

    assert main(["demo", "--crash", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "liquidated nobody" in text
    assert "contagion" not in text and "was liquidated" not in text
    assert main(["demo", "--crash", "0.15"]) == 0
    text = capsys.readouterr().out
    assert "took the BTC position down with it (contagion)" in text
    assert "the ETH subaccount was liquidated; the BTC subaccount survived" in text
    only_iso = conclusions(0.1, {"isolated ETH": ["ETH"]})
    assert only_iso[0].startswith("CROSS: the shared collateral absorbed")


def test_the_shipped_scenarios_pass_the_bounds():
    """The bounds only exclude absurd values: every shipped scenario loads and its seed-1
    price path stays in range."""
    for name in ("default", "tiny", "march2020", "october2025"):
        check_price_path(load_scenario(ROOT / "scenarios" / f"{name}.toml"), 1)


EXTREME = """
name = "extreme"
[run]
blocks = 12
block_time_s = 3600
[chain]
block_gas_limit = 10_000_000
initial_base_fee_gwei = 1000.0
gas_token_market = ""
gas_token_price_usd = 1e9
[background]
base_utilization = 10.0
crash_utilization = 10.0
fee_elasticity = 10.0
calm_priority_fee_gwei = 10000.0
crash_priority_fee_gwei = 10000.0
[crash]
start_block = 2
duration_blocks = 5
volatility_multiplier = 5.0
[exchange]
insurance_fund_usd = 1e12
counterparty_fund_usd = 1e12
max_oracle_age_s = 4294967295
funding_enabled = true
funding_period_s = 1
funding_cap = 1.0
backstop_threshold = 1.0
adl_enabled = true
[[markets]]
name = "LO"
initial_price_usd = 1e-5
volatility_annual = 0.5
crash_fall = 0.5
initial_margin = 0.001
maintenance_margin = 0.000001
venue_depth_usd = 1000.0
external_depth_usd = 1000.0
represented_open_interest_usd = 1e12
depth_volatility_exponent = 10.0
depth_volatility_window_blocks = 1
partial_close_factor = 0.99
full_close_notional_usd = 0.0
[[markets]]
name = "HI"
initial_price_usd = 1e8
volatility_annual = 0.5
crash_fall = 0.5
initial_margin = 0.001
maintenance_margin = 0.0005
venue_depth_usd = 1e12
external_depth_usd = 1e12
represented_open_interest_usd = 1e12
full_close_notional_usd = 1e12
[traders]
count = 20
collateral_median_usd = 1e9
collateral_sigma = 3.0
leverage_min = 1.0
leverage_max = 1000.0
top_up_wallet_usd = 1e9
priority_fee_gwei = 10000.0
margin_buffer = 0.0
[liquidators]
count = 3
eth_budget = 1e6
priority_fee_gwei = 10000.0
bid_cap_gwei = 10000.0
bid_increment = 10.0
[arbitrageurs]
count = 2
max_trade_usd = 1e12
collateral_usd = 1e12
priority_fee_gwei = 10000.0
[keeper]
priority_fee_gwei = 10000.0
eth_budget = 1e6
"""


@pytest.mark.parametrize(
    "extra",
    [[], ["--set", "run.gas_enabled=false", "--set", "exchange.margin_price='mark'"]],
)
def test_a_scenario_at_the_edges_of_the_bounds_runs_to_the_end(extra, tmp_path, capsys):
    """Numbers at their limits (prices 1e-5 and 1e8, 1000x leverage, 1e12 USD funds and depths,
    10,000 gwei fees, collateral drawn around 1e9 USD, ...) pass the checks and the contracts."""
    path = tmp_path / "extreme.toml"
    path.write_text(EXTREME)
    code, _, err = cli(capsys, "run", path, "--out", tmp_path / "r", "--quiet", *extra)
    assert code == 0, err
    assert status(tmp_path / "r") == {"state": "complete", "seed": 1, "blocks_completed": 12}
