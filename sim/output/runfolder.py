"""One run folder: resolved scenario, manifest, tables (Parquet), summary, plots, status.

Layout::

    scenario.toml        the resolved scenario (every parameter, defaults filled in)
    manifest.json        seed, package versions, compiler, contract code hashes, backend
    blocks.parquet       per-block series          (pd.read_parquet(folder / "blocks.parquet"))
    transactions.parquet every mined transaction   dropped.parquet: every dropped one
    liquidations.parquet every liquidation         accounts.parquet: every subaccount at the end
    summary.json         key figures (sim.output.summary)
    plots/*.png          prices, liquidations, fees, insurance
    status.json          {"state": "running" | "complete" | "incomplete", ...}
    timing.json          wall-clock times (the only file that differs between identical runs)

Tables are checkpointed while the run goes, so an interrupted or failed run keeps what it
recorded, and ``status.json`` says it is incomplete and why.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from eth_utils import keccak

from sim.chain.artifacts import load_artifact, load_manifest
from sim.scenario.schema import Scenario

PACKAGES = (
    "liqsim",
    "mesa",
    "web3",
    "eth-tester",
    "py-evm",
    "numpy",
    "pandas",
    "pyarrow",
    "matplotlib",
)


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class RunFolder:
    """Writes one run's outputs into ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def start(self, scenario: Scenario, seed: int) -> None:
        self.status("running", seed=seed)
        (self.path / "scenario.toml").write_text(scenario.to_toml())

    def status(self, state: str, **extra: Any) -> None:
        _json(self.path / "status.json", {"state": state, **extra})

    def manifest(self, model) -> None:
        system = model.system
        code = {}
        for name, contract in (
            [("CollateralToken", system.token), ("MarginExchange", system.exchange)]
            + [
                (f"OracleFeed[{n}]", f)
                for n, f in zip(system.market_names, system.feeds, strict=True)
            ]
            + [
                (f"VirtualAmm[{n}]", v)
                for n, v in zip(system.market_names, system.venues, strict=True)
            ]
        ):
            code[name] = {
                "address": contract.address,
                "runtime_code_keccak": "0x"
                + keccak(bytes(model.session.w3.eth.get_code(contract.address))).hex(),
            }
        artifacts = {
            n: "0x" + keccak(load_artifact(n).bytecode).hex() for n in load_manifest()["contracts"]
        }
        _json(
            self.path / "manifest.json",
            {
                "seed": model.seed,
                "scenario": model.scenario.name,
                "scenario_fingerprint": model.scenario.fingerprint(),
                "backend": model.session.backend.name,
                "python": platform.python_version(),
                "packages": package_versions(),
                "compiler": load_manifest()["compiler"],
                "contract_sources_hash": load_manifest()["sourcesHash"],
                "artifact_creation_code_keccak": artifacts,
                "deployed": code,
                "chain_id": model.session.genesis.chain_id,
                "genesis_timestamp": model.session.genesis.timestamp,
            },
        )

    def tables(self, tables: dict[str, pd.DataFrame]) -> None:
        for name, df in tables.items():
            tmp = self.path / f".{name}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.path / f"{name}.parquet")

    def summary(self, summary: dict[str, Any]) -> None:
        _json(self.path / "summary.json", summary)

    def timing(self, timing: dict[str, Any]) -> None:
        _json(self.path / "timing.json", timing)


def read_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    """Load a run folder's tables."""
    path = Path(path)
    return {p.stem: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}
