"""Stylized facts: what an event scenario's runs show, beside what history recorded.

``liqsim facts EXPERIMENT_DIR [--where PATH=VALUE ...]`` reads the runs of an experiment folder
(any of compare, amplify, sweep, phase: its ``results.csv`` names each run folder), computes each
fact per run from the run's tables, and prints one table: fact, the historical figure and its
source, the model's mean over the runs with a 95% t interval. The facts are defined per event
scenario (``march2020``, ``october2025``); any other scenario gets the common ones. A gap between
model and history is a finding to state, not a number to tune away (docs/scenarios.md).

All facts are measured over the scenario's crash window (``crash.start_block`` to its end) unless
they say otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.experiments.metrics import load_run_scenario
from sim.experiments.stats import mean_ci
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario

WORST_WINDOW_S = 600  # "the worst minutes": the 10 minutes with the most liquidated notional


@dataclass(frozen=True)
class Run:
    """One run folder's tables, as the facts read them."""

    scenario: Scenario
    blocks: pd.DataFrame
    liquidations: pd.DataFrame
    transactions: pd.DataFrame
    exogenous: pd.DataFrame
    summary: dict

    @classmethod
    def load(cls, folder: Path) -> Run:
        def table(name: str) -> pd.DataFrame:
            path = folder / f"{name}.parquet"
            return pd.read_parquet(path) if path.exists() else pd.DataFrame()

        return cls(
            load_run_scenario(folder),
            table("blocks"),
            table("liquidations"),
            table("transactions"),
            table("exogenous"),
            json.loads((folder / "summary.json").read_text()),
        )

    @property
    def crash(self) -> pd.DataFrame:
        """The blocks of the crash window."""
        c = self.scenario.crash
        b = self.blocks
        return b[(b["block"] >= c.start_block) & (b["block"] < c.start_block + c.duration_blocks)]

    @property
    def calm(self) -> pd.DataFrame:
        return self.blocks[self.blocks["block"] < self.scenario.crash.start_block]


@dataclass(frozen=True)
class Fact:
    """A stylized fact: how to measure it on a run, and what history says."""

    name: str
    unit: str
    history: str
    source: str
    measure: Callable[[Run], float]


# ------------------------------------------------------------------------------- measures


def full_block_share(run: Run) -> float:
    c = run.crash
    return float((c["background_gas_demanded"] > c["background_gas_used"]).mean())


def gas_price_multiple(run: Run) -> float:
    """Mean gas price (gas-weighted over everything blocks carried) in the crash over calm."""

    if "mean_gas_price_gwei" not in run.blocks:
        return np.nan  # a run written before the column existed

    def price(frame: pd.DataFrame) -> float:
        return float(frame["mean_gas_price_gwei"].mean())

    calm = price(run.calm)
    return price(run.crash) / calm if calm > 0 else np.nan


def _delay(run: Run, kind: str) -> float:
    tx = run.transactions
    if tx.empty:
        return np.nan
    c = run.scenario.crash
    first = run.blocks["chain_block"].iloc[0] - run.blocks["block"].iloc[0]
    lo, hi = first + c.start_block, first + c.start_block + c.duration_blocks
    sel = tx[(tx["sender_kind"] == kind) & (tx["block_number"] >= lo) & (tx["block_number"] < hi)]
    return float(sel["inclusion_delay_blocks"].mean()) if len(sel) else np.nan


def oracle_report_delay_s(run: Run) -> float:
    return _delay(run, "oracle") * run.scenario.run.block_time_s


def trader_delay_s(run: Run) -> float:
    return _delay(run, "trader") * run.scenario.run.block_time_s


def oracle_max_gap(run: Run) -> float:
    gaps = [
        (run.crash[f"{m.name}_oracle_usd"] / run.crash[f"{m.name}_external_usd"] - 1).abs().max()
        for m in run.scenario.markets
    ]
    return float(max(gaps))


def liquidation_delay_s(run: Run) -> float:
    liq = run.liquidations
    if liq.empty:
        return np.nan
    return float(liq["delay_blocks"].mean()) * run.scenario.run.block_time_s


def shortfall_peak_share(run: Run) -> float:
    """Peak shortfall marked to market, as a share of open interest at the crash start."""
    oi = run.blocks.loc[run.blocks["block"] == run.scenario.crash.start_block, "open_interest_usd"]
    peak = run.blocks["shortfall_usd"].max()
    return float(peak / oi.iloc[0]) if len(oi) and oi.iloc[0] > 0 else np.nan


def _fall(run: Run, market: str) -> float:
    c = run.crash
    start = run.blocks.loc[run.blocks["block"] == run.scenario.crash.start_block]
    p0 = float(start[f"{market}_external_usd"].iloc[0])
    return float(1 - c[f"{market}_external_usd"].min() / p0)


def worst_window_share(run: Run) -> float:
    """Share of the run's liquidated notional in its worst ``WORST_WINDOW_S`` seconds."""
    liq = run.liquidations
    if liq.empty or liq["notional_usd"].sum() <= 0:
        return np.nan
    width = max(1, WORST_WINDOW_S // run.scenario.run.block_time_s)
    per_block = liq.groupby("block")["notional_usd"].sum()
    series = per_block.reindex(range(int(run.blocks["block"].max()) + 1), fill_value=0.0)
    return float(series.rolling(width, min_periods=1).sum().max() / series.sum())


def spillover_notional_usd(run: Run) -> float:
    liq = run.liquidations
    return float(liq["spillover_notional_usd"].sum()) if "spillover_notional_usd" in liq else np.nan


def deleveragings(run: Run) -> float:
    return float(run.blocks["deleveragings"].sum())


def thinnest_depth_fraction(run: Run) -> float:
    e = run.exogenous
    fractions = [
        e[col].min() / e[col].iloc[0] for col in e.columns if col.endswith("_external_depth_usd")
    ]
    return float(min(fractions)) if fractions else np.nan


# ---------------------------------------------------------------------------------- facts

COMMON = (
    Fact("liquidation delay", "s", "", "", liquidation_delay_s),
    Fact("worst oracle gap vs the external price", "fraction", "", "", oracle_max_gap),
    Fact("peak shortfall / open interest", "fraction", "", "", shortfall_peak_share),
)

MARCH_2020 = (
    Fact(
        "share of full blocks in the fall",
        "fraction",
        "blocks stayed full for hours",
        "issue 11 text; no public figure in CALIBRATION.md",
        full_block_share,
    ),
    Fact(
        "mean gas price, fall / calm",
        "x",
        "about 6x (mean gas price, to about 80 gwei)",
        "Glassnode, via CALIBRATION.md",
        gas_price_multiple,
    ),
    Fact(
        "oracle report inclusion delay in the fall",
        "s",
        "tens of seconds (about 40 s noted) under congestion",
        "Chainlink docs, via CALIBRATION.md",
        oracle_report_delay_s,
    ),
    Fact(
        "trader transaction inclusion delay in the fall",
        "s",
        "low bidders waited tens of minutes",
        "issue 11 text; no public figure in CALIBRATION.md",
        trader_delay_s,
    ),
    Fact(
        "worst oracle gap vs the external price",
        "fraction",
        "oracle updates lagged the market",
        "CALIBRATION.md (qualitative)",
        oracle_max_gap,
    ),
    Fact(
        "liquidation delay",
        "s",
        "keepers failed to keep up; zero-DAI bids",
        "Maker forum retrospectives, news (CALIBRATION.md)",
        liquidation_delay_s,
    ),
    Fact(
        "peak shortfall / open interest",
        "fraction",
        "Maker: 6.65 M DAI deficit after 8.3 M USD of collateral went for zero bids",
        "news, Maker forum (CALIBRATION.md); a lending protocol, not a perp venue",
        shortfall_peak_share,
    ),
)

OCTOBER_2025 = (
    Fact(
        "BTC fall to the trough",
        "fraction",
        "about 12% within about 45 minutes",
        "news, secondary (CALIBRATION.md)",
        lambda run: _fall(run, "BTC"),
    ),
    Fact(
        "ETH fall to the trough",
        "fraction",
        "about 16% within about 45 minutes",
        "news, secondary (CALIBRATION.md)",
        lambda run: _fall(run, "ETH"),
    ),
    Fact(
        "share of liquidated notional in the worst 10 minutes",
        "fraction",
        "most of about 19 B USD in 24 h came in the first hour",
        "Coinglass, secondary (CALIBRATION.md); no per-minute public figure",
        worst_window_share,
    ),
    Fact(
        "notional closed by CROSS liquidations in markets not the cause",
        "USD",
        "cross-margin positions closed across assets",
        "news, secondary (CALIBRATION.md)",
        spillover_notional_usd,
    ),
    Fact(
        "auto-deleveragings per run",
        "count",
        "Hyperliquid ran cross-margin ADL for the first time in over two years",
        "news, secondary (CALIBRATION.md)",
        deleveragings,
    ),
    Fact(
        "thinnest external depth / calm depth",
        "fraction",
        "depth collapsed by more than 90% on key exchanges",
        "FTI Consulting via news, secondary (docs/scenarios.md)",
        thinnest_depth_fraction,
    ),
    Fact(
        "liquidation delay",
        "s",
        "",
        "",
        liquidation_delay_s,
    ),
)

FACTS = {"march2020": MARCH_2020, "october2025": OCTOBER_2025}


def facts_for(scenario_name: str) -> tuple[Fact, ...]:
    return FACTS.get(scenario_name, COMMON)


# ------------------------------------------------------------------------------ the table


def run_folders(experiment: Path, where: dict[str, str]) -> list[Path]:
    """The finished run folders of an experiment whose ``results.csv`` columns match
    ``where`` (values compared as lower-case text)."""
    path = experiment / "results.csv"
    if not path.exists():
        raise ConfigError(
            "EXPERIMENT_DIR", f"{experiment} has no results.csv (not an experiment folder)"
        )
    results = pd.read_csv(path)
    for key, value in where.items():
        if key not in results:
            raise ConfigError("--where", f"{key!r} is not a column of {path}")
        results = results[results[key].astype(str).str.lower() == value.lower()]
    if "state" in results:
        results = results[results["state"] == "complete"]
    folders = [
        experiment / "runs" / Path(p).name if not Path(p).is_absolute() else Path(p)
        for p in results["run_folder"]
    ]
    return [f for f in folders if (f / "summary.json").exists()]


def facts_table(folders: list[Path]) -> pd.DataFrame:
    """One row per fact: history, source, the model's mean and interval, and n runs."""
    if not folders:
        raise ConfigError("EXPERIMENT_DIR", "no finished runs match")
    runs = [Run.load(f) for f in folders]
    names = {r.scenario.name for r in runs}
    if len(names) != 1:
        raise ConfigError("EXPERIMENT_DIR", f"runs of several scenarios: {sorted(names)}")
    rows = []
    for fact in facts_for(names.pop()):
        iv = mean_ci([fact.measure(r) for r in runs])
        rows.append(
            {
                "fact": fact.name,
                "unit": fact.unit,
                "history": fact.history,
                "source": fact.source,
                "model": iv.text(),
                "runs": iv.n,
            }
        )
    return pd.DataFrame(rows)
