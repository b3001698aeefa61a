"""Python entry point (for notebooks): run a scenario and get its tables as DataFrames.

from sim.api import run_scenario
result = run_scenario("scenarios/default.toml", seed=1)
result.liquidations.head(); result.summary["liquidations"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sim.model import LiqSimModel
from sim.output.plots import plot_run
from sim.output.runfolder import RunFolder
from sim.output.summary import summarize
from sim.scenario.schema import DEFAULT_SCENARIO, Scenario, resolve_scenario

__all__ = ["DEFAULT_SCENARIO", "RunResult", "resolve_scenario", "run_scenario", "simulate"]

CHECKPOINT_BLOCKS = 100


@dataclass
class RunResult:
    """A finished run: its tables, key figures and folder (None when not written)."""

    tables: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    folder: Path | None = None

    @property
    def blocks(self) -> pd.DataFrame:
        return self.tables["blocks"]

    @property
    def transactions(self) -> pd.DataFrame:
        return self.tables["transactions"]

    @property
    def liquidations(self) -> pd.DataFrame:
        return self.tables["liquidations"]

    @property
    def accounts(self) -> pd.DataFrame:
        return self.tables["accounts"]


def _facts(model: LiqSimModel) -> dict[str, Any]:
    return {
        "market_names": list(model.scenario.market_names),
        "initial_insurance_usd": model.system.config.insurance_fund_units / 1e6,
        "gas_token_market": model.scenario.chain.gas_token_market or None,
    }


def simulate(
    scenario: Scenario,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
    checkpoint: Callable[[LiqSimModel], None] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], LiqSimModel]:
    """Run one model to the end; return its tables, summary and the model."""
    model = LiqSimModel(scenario, seed)

    def tick(block: int) -> None:
        if progress is not None:
            progress(block)
        if checkpoint is not None and block % CHECKPOINT_BLOCKS == 0:
            checkpoint(model)

    try:
        model.run(progress=tick)
    finally:
        _release(model)
    tables = model.recorder.tables()
    return tables, summarize(tables, _facts(model)), model


def _release(model: LiqSimModel) -> None:
    """Drop Mesa 3.3's class-level reference to a finished model (``Agent._ids`` keeps every
    model, and with it a whole chain, alive for the life of the process)."""
    from mesa.agent import Agent

    registry = getattr(Agent, "_ids", None)
    if registry is not None:
        registry.pop(model, None)


def counterfactual_liquidations(scenario: Scenario, seed: int) -> int:
    """Liquidations of the same run without endogenous price impact."""
    cf = replace(scenario, run=replace(scenario.run, endogenous_impact=False))
    tables, _, _ = simulate(cf, seed)
    return len(tables["liquidations"])


def run_scenario(
    scenario: str | Path | Scenario | None = None,
    *,
    seed: int = 1,
    out: str | Path | None = None,
    blocks: int | None = None,
    overrides: Iterable[str] = (),
    counterfactual: bool = True,
    plots: bool = True,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Run a scenario; write a run folder to ``out`` if given; return tables and summary.

    With ``counterfactual`` (and endogenous impact on), the same seed is run a second time
    without endogenous price impact, and ``summary["cascade_amplification"]`` is the ratio of
    their liquidation counts."""
    sc = resolve_scenario(scenario, overrides, blocks)
    folder = RunFolder(out) if out is not None else None
    started = time.perf_counter()
    model_holder: dict[str, LiqSimModel] = {}

    def checkpoint(model: LiqSimModel) -> None:
        model_holder["model"] = model
        if folder is not None:
            folder.tables(model.recorder.tables())

    if folder is not None:
        folder.start(sc, seed)
    try:
        tables, summary, model = simulate(sc, seed, progress=progress, checkpoint=checkpoint)
    except BaseException as exc:
        if folder is not None:
            model = model_holder.get("model")
            if model is not None:
                folder.tables(model.recorder.tables())
            folder.status(
                "incomplete",
                seed=seed,
                error=f"{type(exc).__name__}: {exc}",
                blocks_completed=model.block if model is not None else 0,
            )
        raise
    run_s = time.perf_counter() - started
    summary["cascade_amplification"] = _amplification(
        sc, seed, len(tables["liquidations"]), counterfactual
    )
    if folder is not None:
        folder.manifest(model)
        folder.tables(tables)
        folder.summary(summary)
        if plots:
            plot_run(tables, list(sc.market_names), folder.path / "plots")
        folder.timing(
            {
                "run_s": round(run_s, 3),
                "total_s": round(time.perf_counter() - started, 3),
                "blocks": len(tables["blocks"]),
                "transactions": len(tables["transactions"]),
            }
        )
        folder.status("complete", seed=seed, blocks_completed=len(tables["blocks"]))
    return RunResult(tables, summary, folder.path if folder is not None else None)


def _amplification(sc: Scenario, seed: int, liquidations: int, enabled: bool) -> dict[str, Any]:
    if not enabled or not sc.run.endogenous_impact:
        why = "not computed" if not enabled else "endogenous impact is off in this scenario"
        return {
            "liquidations": liquidations,
            "without_endogenous_impact": None,
            "factor": None,
            "note": why,
        }
    base = counterfactual_liquidations(sc, seed)
    return {
        "liquidations": liquidations,
        "without_endogenous_impact": base,
        "factor": round(liquidations / base, 6) if base else None,
        "note": "liquidations / liquidations of the same seed without endogenous price impact"
        + ("" if base else " (undefined: the counterfactual had none)"),
    }
