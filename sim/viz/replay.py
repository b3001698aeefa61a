"""Replay: a Mesa model that scrubs through a finished run folder block by block, no chain.

Each step shows one more recorded block; :meth:`ReplayModel.seek` jumps to any block (the
page's slider). The panels read the same :class:`~sim.viz.snapshot.Snapshot` as a live run,
cut at the block shown; the mempool's history is rebuilt from the transactions and dropped
tables (who waited, by sender kind; why a transaction was left out is not recorded).
"""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from functools import lru_cache
from pathlib import Path

import mesa
import pandas as pd

from sim.output.recorder import ADL_COLUMNS, DROPPED_COLUMNS, LIQUIDATION_COLUMNS, TX_COLUMNS
from sim.scenario.loader import ConfigError
from sim.viz.snapshot import Snapshot, dropped_with_block, waiting_history

REQUIRED = "blocks.parquet"
OPTIONAL = {
    "liquidations": LIQUIDATION_COLUMNS,
    "adl": ADL_COLUMNS,
    "dropped": DROPPED_COLUMNS,
    "transactions": TX_COLUMNS,
}


def check_replay_folder(path: str | Path, what: str = "--replay") -> Path:
    """``path`` if it is a run folder with a blocks table (``ConfigError`` saying why not)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(
            what, f"{str(folder)!r} is not a folder (give a run folder: liqsim run ... --out DIR)"
        )
    if not (folder / REQUIRED).is_file():
        hint = (
            "; an experiment folder holds its runs under runs/"
            if (folder / "runs").is_dir()
            else ""
        )
        raise ConfigError(
            what,
            f"{str(folder)!r} is not a liqsim run folder: it has no {REQUIRED} (write one with "
            f"liqsim run SCENARIO --out DIR){hint}",
        )
    try:
        read_tables(folder.resolve())
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(what, f"{str(folder)!r}: its tables cannot be read ({exc})") from None
    return folder


@lru_cache(maxsize=4)
def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The run folder's tables (a missing optional table is empty, with its columns)."""
    tables = {"blocks": pd.read_parquet(folder / REQUIRED)}
    if "block" not in tables["blocks"] or "chain_block" not in tables["blocks"]:
        raise ValueError(f"{REQUIRED} has no block / chain_block columns")
    for name, columns in OPTIONAL.items():
        path = folder / f"{name}.parquet"
        tables[name] = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=columns)
    return tables


def market_names(blocks: pd.DataFrame) -> list[str]:
    """The markets of a blocks table, in order (from its ``NAME_external_usd`` columns)."""
    names = [m.group(1) for c in blocks.columns if (m := re.fullmatch(r"(.+)_external_usd", c))]
    return [n for n in names if f"{n}_oracle_usd" in blocks.columns]


def _title(folder: Path) -> str:
    name = folder.name
    scenario = folder / "scenario.toml"
    if scenario.is_file():
        with contextlib.suppress(OSError, ValueError):
            name = tomllib.loads(scenario.read_text(encoding="utf-8")).get("name", name)
    seed = ""
    status = folder / "status.json"
    if status.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            seed = f", seed {json.loads(status.read_text(encoding='utf-8'))['seed']}"
    return f"replay of {name}{seed}: {folder}"


class ReplayModel(mesa.Model):
    """A finished run, shown up to ``block`` of its recorded blocks; one step = one block."""

    def __init__(self, folder: str | Path = ".", seed: int | None = None):
        super().__init__(seed=seed)
        self.folder = check_replay_folder(folder).resolve()
        self.tables = read_tables(self.folder)
        blocks = self.tables["blocks"]
        self.total = len(blocks)
        self.markets = market_names(blocks)
        self.title = _title(self.folder)
        self.waiting = waiting_history(blocks, self.tables["transactions"], self.tables["dropped"])
        self.dropped = dropped_with_block(self.tables["dropped"], blocks)
        self.block = 0
        self._snapshot: Snapshot | None = None

    def step(self) -> None:
        """Show one more recorded block."""
        self.seek(self.block + 1)

    def seek(self, block: int) -> None:
        """Show the first ``block`` recorded blocks (clipped to 0..total)."""
        self.block = max(0, min(int(block), self.total))
        self.running = self.block < self.total

    def snapshot(self) -> Snapshot:
        if self._snapshot is None or self._snapshot.block != self.block:
            self._snapshot = self._make_snapshot()
        return self._snapshot

    def _make_snapshot(self) -> Snapshot:
        b, t = self.block, self.tables
        liq, adl = t["liquidations"], t["adl"]
        return Snapshot(
            mode="replay",
            title=self.title,
            markets=self.markets,
            block=b,
            total=self.total,
            blocks=t["blocks"].iloc[:b].reset_index(drop=True),
            liquidations=liq[liq["block"] < b].reset_index(drop=True),
            adl=adl[adl["block"] < b].reset_index(drop=True),
            dropped=self.dropped[self.dropped["block"] < b].reset_index(drop=True),
            waiting=self.waiting.iloc[:b],
            priced_out=self._priced_out(b),
        )

    def _priced_out(self, b: int) -> pd.DataFrame | None:
        """Our transactions each block left out for their fee (all senders in one column);
        None for run folders written before the blocks table had the column."""
        blocks = self.tables["blocks"]
        if "priced_out_txs" not in blocks:
            return None
        return pd.DataFrame(
            {"all": blocks["priced_out_txs"].to_numpy()[:b]}, index=self.waiting.index[:b]
        )
