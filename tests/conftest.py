"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.toml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run folder of scenarios/tiny.toml, seed 1 (what ``liqsim run`` writes), for
    the dashboard's replay tests."""
    from sim.api import run_scenario

    out = tmp_path_factory.mktemp("tiny-run") / "tiny-seed1"
    run_scenario(TINY, seed=1, out=out, counterfactual=False, plots=False)
    return out
