"""Python entry point (for notebooks): run a scenario and get its tables as DataFrames.

from sim.api import run_scenario
result = run_scenario("scenarios/default.toml", seed=1)
result.liquidations.head(); result.summary["liquidations"]

With ``out``, the run is written to a run folder that never lies (see
:mod:`sim.output.runfolder`): an existing folder is refused unless ``force``; an interrupted
run (Ctrl-C, SIGTERM) ends ``interrupted`` and a failed one ``incomplete``, each with the
tables of the blocks it simulated, and the exception is raised again.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sim.chain.backend import ChainError, check_backend
from sim.model import LiqSimModel
from sim.output.runfolder import (
    OutputWriteError,
    RunFolder,
    deferred_interrupts,
    interrupt_signal,
    interrupts_as_exceptions,
    raise_pending,
    shielded,
)
from sim.output.summary import summarize
from sim.scenario.loader import ConfigError
from sim.scenario.pricepath import PricePathError
from sim.scenario.schema import (
    DEFAULT_SCENARIO,
    Scenario,
    check_price_path,
    check_seed,
    resolve_scenario,
)

__all__ = ["DEFAULT_SCENARIO", "RunResult", "resolve_scenario", "run_scenario", "simulate"]

CHECKPOINT_BLOCKS = 100

#: Errors caused by the scenario or the command line (exit status 2 on the command line).
USER_ERRORS = (ConfigError, PricePathError)


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
    on_model: Callable[[LiqSimModel], None] | None = None,
    keep_chain: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], LiqSimModel]:
    """Run one model to the end; return its tables, summary and the model.

    ``on_model`` is handed the model once built. An interruption (SIGINT, SIGTERM, when
    :func:`~sim.output.runfolder.interrupts_as_exceptions` is on) stops the run between two
    blocks, so its tables are consistent. The model's chain is closed (an anvil backend's
    process stopped) when the run ends, unless ``keep_chain`` and the run succeeded: the
    caller then reads it and calls ``model.session.close()``."""
    model = LiqSimModel(scenario, seed)
    ok = False
    if on_model is not None:
        on_model(model)

    def tick(block: int) -> None:
        if progress is not None:
            progress(block)
        raise_pending()
        if checkpoint is not None and block % CHECKPOINT_BLOCKS == 0:
            checkpoint(model)

    try:
        with deferred_interrupts():
            model.run(progress=tick)
        ok = True
    finally:
        _release(model)
        if not (ok and keep_chain):
            model.session.close()
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
    out: str | Path | RunFolder | None = None,
    blocks: int | None = None,
    overrides: Iterable[str] = (),
    counterfactual: bool = True,
    plots: bool = True,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> RunResult:
    """Run a scenario; write a run folder to ``out`` if given; return tables and summary.

    With ``counterfactual`` (and endogenous impact on), the same seed is run a second time
    without endogenous price impact, and ``summary["cascade_amplification"]`` is the ratio of
    their liquidation counts. ``out`` may be a :class:`RunFolder` already claimed (the command
    line claims it before the heavy imports); an existing folder is replaced only with
    ``force``. Bad inputs (scenario, seed, ``out``) raise :class:`ConfigError` before any
    set-up."""
    sc = resolve_scenario(scenario, overrides, blocks)
    check_seed(seed, "seed")
    check_price_path(sc, seed)
    try:
        check_backend(sc.chain.backend)  # e.g. anvil not installed: a user error, exit 2
    except ChainError as exc:
        raise ConfigError("chain.backend", str(exc)) from None
    with interrupts_as_exceptions():
        if out is None:
            tables, summary, _ = simulate(sc, seed, progress=progress)
            summary["cascade_amplification"] = _amplification(
                sc, seed, len(tables["liquidations"]), counterfactual
            )
            return RunResult(tables, summary, None)
        folder = out if isinstance(out, RunFolder) else RunFolder(out, force=force)
        return _run_into(folder, sc, seed, counterfactual, plots, progress)


def _run_into(
    folder: RunFolder,
    sc: Scenario,
    seed: int,
    counterfactual: bool,
    plots: bool,
    progress: Callable[[int], None] | None,
) -> RunResult:
    started = time.perf_counter()
    live: dict[str, Any] = {}  # the model once built; the tables once simulated

    def tick(block: int) -> None:
        if progress is not None:
            progress(block)
        folder.heartbeat(block)

    def checkpoint(model: LiqSimModel) -> None:
        folder.tables(model.recorder.tables(), blocks=model.block)
        folder.heartbeat(model.block, every_s=0)

    try:
        folder.start(sc, seed)
        tables, summary, model = simulate(
            sc,
            seed,
            progress=tick,
            checkpoint=checkpoint,
            on_model=lambda m: live.__setitem__("model", m),
            keep_chain=True,
        )
        live["tables"] = tables
        try:
            folder.manifest(model)  # reads the contracts' code from the chain
        finally:
            model.session.close()
        run_s = time.perf_counter() - started
        summary["cascade_amplification"] = _amplification(
            sc, seed, len(tables["liquidations"]), counterfactual
        )
        folder.tables(tables, blocks=len(tables["blocks"]))
        folder.summary(summary)
        if plots:
            from sim.output.plots import plot_run  # matplotlib loads only when plots are drawn

            folder.plots(lambda d: plot_run(tables, list(sc.market_names), d))
        folder.timing(
            {
                "run_s": round(run_s, 3),
                "total_s": round(time.perf_counter() - started, 3),
                "blocks": len(tables["blocks"]),
                "transactions": len(tables["transactions"]),
            }
        )
        path = folder.finish("complete", seed=seed, blocks_completed=len(tables["blocks"]))
    except BaseException as exc:
        with shielded():
            _record_failure(folder, exc, seed, live)
        raise
    return RunResult(tables, summary, path)


def _trim(tables: dict[str, pd.DataFrame], blocks: int) -> dict[str, pd.DataFrame]:
    """The tables without rows of a block that did not complete (a failure inside a block)."""
    out = dict(tables)
    b = tables.get("blocks")
    if b is None or "block" not in b:
        return out
    out["blocks"] = b[b["block"] < blocks].reset_index(drop=True)
    done = out["blocks"]
    last_chain = int(done["chain_block"].iloc[-1]) if len(done) and "chain_block" in done else -1
    for name, column, limit in (
        ("liquidations", "block", blocks - 1),
        ("transactions", "block_number", last_chain),
        ("dropped", "dropped_block", last_chain),
    ):
        df = tables.get(name)
        if df is not None and column in df and len(df):
            out[name] = df[df[column] <= limit].reset_index(drop=True)
    return out


def _record_failure(folder: RunFolder, exc: BaseException, seed: int, live: dict) -> None:
    """Give the folder of a run that stopped early its true final state (or remove it when a
    user error stopped the run before it started). Never raises: the original error goes on."""
    model: LiqSimModel | None = live.get("model")
    if isinstance(exc, USER_ERRORS) and model is None:
        folder.abandon()  # nothing ran: no folder, the error says why
        return
    blocks = len(live["tables"]["blocks"]) if "tables" in live else (model.block if model else 0)
    if isinstance(exc, KeyboardInterrupt):
        extra: dict[str, Any] = {"signal": signal.Signals(interrupt_signal(exc)).name}
        state = "interrupted"
    else:
        cause = (
            "output"
            if isinstance(exc, OutputWriteError)
            else "input"
            if isinstance(exc, USER_ERRORS)
            else "simulation"
        )
        extra = {"cause": cause, "error": f"{type(exc).__name__}: {exc}"}
        state = "incomplete"
    notes = []
    if not isinstance(exc, OutputWriteError):  # a full or read-only disk: keep the checkpoint
        try:
            tables = live.get("tables")
            if tables is None and model is not None:
                tables = _trim(model.recorder.tables(), blocks)
            if tables is not None:
                folder.tables(tables, blocks=blocks)
        except Exception as err:
            notes.append(f"the last tables could not be saved ({err}); they hold the checkpoint")
        if state == "incomplete" and extra["cause"] == "simulation":
            try:
                folder.write_text("traceback.txt", "".join(traceback.format_exception(exc)))
            except Exception as err:
                notes.append(f"traceback.txt not written ({err})")
    try:
        folder.finish(
            state,
            seed=seed,
            blocks_completed=blocks,
            tables_blocks=folder.tables_blocks or 0,
            **extra,
            **({"notes": notes} if notes else {}),
        )
    except Exception as err:
        exc.add_note(
            f"liqsim: the run folder could not be finished ({err}); what was written is in "
            f"{folder.work} (reported as stale once this process ends)"
        )


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
