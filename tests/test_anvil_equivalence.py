"""py-evm and anvil give the same economics: one scenario and seed on both backends, the same
tables (transactions' status and gas, liquidations, accounts, blocks, summary), hashes aside.

``economic_differences`` is also what ``benchmarks/backends.py`` checks on the default run.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim.api import CHECKPOINT_BLOCKS, run_scenario
from sim.chain.session import ChainSession
from sim.output.runfolder import read_tables
from tests.anvil_support import needs_anvil

#: A short run that still liquidates: the crash early, fewer traders.
SHORT = ("run.blocks=160", "crash.start_block=40", "crash.duration_blocks=60", "traders.count=60")

#: Tables compared (every column but hashes); a table missing from both runs is skipped.
TABLES = ("transactions", "liquidations", "accounts", "blocks", "dropped", "adl")


def _without_hashes(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in df.columns if "hash" not in c]].reset_index(drop=True)


def _summary_without_hashes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _summary_without_hashes(v) for k, v in value.items() if "hash" not in k}
    if isinstance(value, list):
        return [_summary_without_hashes(v) for v in value]
    return value


def economic_differences(
    a: dict[str, pd.DataFrame],
    b: dict[str, pd.DataFrame],
    summary_a: dict[str, Any] | None = None,
    summary_b: dict[str, Any] | None = None,
) -> list[str]:
    """What differs between two runs' tables (and summaries), hash columns aside; [] if none."""
    problems = []
    for name in TABLES:
        if name not in a and name not in b:
            continue
        if (name in a) != (name in b):
            problems.append(f"{name}: only in one run")
            continue
        left, right = _without_hashes(a[name]), _without_hashes(b[name])
        if list(left.columns) != list(right.columns) or left.shape != right.shape:
            problems.append(f"{name}: shape {left.shape} vs {right.shape}")
            continue
        unequal = [c for c in left.columns if not left[c].equals(right[c])]
        if unequal:
            problems.append(f"{name}: columns differ: {', '.join(unequal)}")
    if summary_a is not None and summary_b is not None:
        sa, sb = _summary_without_hashes(summary_a), _summary_without_hashes(summary_b)
        keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        if keys:
            problems.append(f"summary: keys differ: {', '.join(keys)}")
    return problems


def _run(*overrides: str, seed: int = 5):
    return run_scenario(
        "scenarios/default.toml", seed=seed, overrides=[*SHORT, *overrides], counterfactual=False
    )


@needs_anvil
def test_py_evm_and_anvil_give_the_same_economics() -> None:
    reference = _run()
    fast = _run("chain.backend=anvil")
    tx = reference.transactions
    assert len(reference.liquidations) > 0 and (tx["status"] == 0).any()  # a meaningful run
    assert (
        economic_differences(reference.tables, fast.tables, reference.summary, fast.summary) == []
    )


@needs_anvil
def test_a_fork_of_an_empty_upstream_runs_the_same_economics() -> None:
    """Forked from a fresh upstream (same genesis time), a run is the one without a fork."""
    with ChainSession(seed=99, n_accounts=1, backend="anvil") as upstream:
        forked = _run("chain.backend=anvil", f"chain.fork_url={upstream.backend.url}")
        assert upstream.head().number == 0  # the run mined on its fork, not upstream
    local = _run("chain.backend=anvil")
    assert economic_differences(local.tables, forked.tables, local.summary, forked.summary) == []


@needs_anvil
def test_anvil_dying_mid_run_leaves_an_incomplete_folder_with_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sim.chain.anvil import AnvilBackend, AnvilDied

    started: list[AnvilBackend] = []
    init = AnvilBackend.__init__

    def record(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(AnvilBackend, "__init__", record)
    kill_at = CHECKPOINT_BLOCKS + 10

    def progress(block: int) -> None:
        if block == kill_at:
            os.kill(started[0].process.pid, signal.SIGKILL)

    out = tmp_path / "run"
    with pytest.raises(AnvilDied, match="killed by SIGKILL"):
        run_scenario(
            "scenarios/default.toml",
            seed=5,
            out=out,
            overrides=[*SHORT, "chain.backend=anvil"],
            counterfactual=False,
            plots=False,
            progress=progress,
        )
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "incomplete" and status["cause"] == "simulation"
    assert status["error"].startswith("AnvilDied: anvil stopped during")
    assert status["tables_blocks"] >= CHECKPOINT_BLOCKS
    assert len(read_tables(out)["blocks"]) >= CHECKPOINT_BLOCKS
    assert not started[0].process.workdir.exists()  # stopped and cleaned up
