"""The live dashboard model: a Mesa model that SolaraViz builds from flat keyword inputs and
that wraps one :class:`~sim.model.LiqSimModel` on its own local chain. One step is one block.

The panels read the wrapped model's recorder (the same rows a run folder's tables hold) and,
for the mempool, the block builder's public mempool and each block's result; the dashboard
sends nothing to the chain, so a run at the inputs' defaults is ``liqsim run SCENARIO --seed
N`` block for block.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mesa
import pandas as pd

from sim.model import LiqSimModel
from sim.output.recorder import (
    ADL_COLUMNS,
    DROPPED_COLUMNS,
    LIQUIDATION_COLUMNS,
    PRICED_OUT,
)
from sim.scenario.schema import DEFAULT_SCENARIO
from sim.viz.inputs import build_scenario
from sim.viz.snapshot import Snapshot, _kinds, dropped_with_block

if TYPE_CHECKING:
    from sim.market.builder import BlockResult


class DashboardModel(mesa.Model):
    """One live run of ``scenario`` with the dashboard's inputs (:mod:`sim.viz.inputs`) as
    overrides. Raises :class:`~sim.scenario.loader.ConfigError` for a bad input."""

    def __init__(self, scenario: str | Path | None = None, seed: int = 1, **kwargs: Any):
        super().__init__(seed=seed)
        self.scenario_path = Path(scenario) if scenario else DEFAULT_SCENARIO
        self.inputs = dict(kwargs)  # the dashboard inputs (SolaraViz needs the name kwargs)
        self.scenario = build_scenario(self.scenario_path, seed, kwargs)
        self.sim = LiqSimModel(self.scenario, seed)
        _forget_agent_ids(self.sim)
        weakref.finalize(self, self.sim.session.close)  # an anvil backend's process
        self.total = self.scenario.run.blocks
        self.last_result: BlockResult | None = None
        self._watch_blocks()
        self._waiting: list[dict[str, int]] = []
        self._priced_out: list[dict[str, int]] = []
        self._snapshot: Snapshot | None = None

    @property
    def block(self) -> int:
        """Blocks simulated so far."""
        return self.sim.block

    def _watch_blocks(self) -> None:
        """Keep each block's result (what the builder left waiting, and why) for the mempool
        panel: a pass-through around the builder's ``build_block``."""
        builder = self.sim.builder
        build = builder.build_block

        def build_and_keep() -> BlockResult:
            self.last_result = build()
            return self.last_result

        builder.build_block = build_and_keep

    def step(self) -> None:
        """Simulate one block (nothing once the run's last block is done)."""
        if self.block >= self.total:
            self.running = False
            return
        self.sim.step()
        self._record_mempool()
        self._snapshot = None
        self.running = self.block < self.total

    def _record_mempool(self) -> None:
        pending = self.sim.builder.mempool.pending()
        kind_of = {f"0x{p.tx_hash.hex()}": p.submission.sender_kind for p in pending}
        waiting: dict[str, int] = {}
        for p in pending:
            waiting[p.submission.sender_kind] = waiting.get(p.submission.sender_kind, 0) + 1
        priced: dict[str, int] = {}
        for tx_hash, reason in self.last_result.waiting if self.last_result else ():
            kind = kind_of.get(tx_hash)
            if kind is not None and reason in PRICED_OUT:
                priced[kind] = priced.get(kind, 0) + 1
        self._waiting.append(waiting)
        self._priced_out.append(priced)

    def snapshot(self) -> Snapshot:
        """The tables so far (rebuilt once per block)."""
        if self._snapshot is None or self._snapshot.block != self.block:
            self._snapshot = self._make_snapshot()
        return self._snapshot

    def _make_snapshot(self) -> Snapshot:
        rec = self.sim.recorder
        blocks = rec.datacollector.get_model_vars_dataframe().reset_index(drop=True)
        dropped = pd.DataFrame(rec.dropped, columns=DROPPED_COLUMNS)
        index = pd.Index(range(len(self._waiting)), name="block")
        kinds = _kinds(pd.Series([k for w in self._waiting for k in w], dtype=object))
        return Snapshot(
            mode="live",
            title=f"{self.scenario.name} (seed {self.sim.seed})",
            markets=list(self.scenario.market_names),
            block=self.block,
            total=self.total,
            blocks=blocks,
            liquidations=pd.DataFrame(rec.liquidations, columns=LIQUIDATION_COLUMNS),
            adl=pd.DataFrame(rec.adl_fills, columns=ADL_COLUMNS),
            dropped=dropped_with_block(dropped, blocks),
            waiting=pd.DataFrame(self._waiting, index=index, columns=kinds).fillna(0).astype(int),
            priced_out=pd.DataFrame(self._priced_out, index=index, columns=kinds)
            .fillna(0)
            .astype(int),
        )


def _forget_agent_ids(model: mesa.Model) -> None:
    """Mesa 3.3 keeps every model that created agents in ``Agent._ids`` for the life of the
    process (and with it a whole chain). The wrapped model creates all its agents when built,
    so drop it there: a dashboard reset then frees the previous run."""
    registry = getattr(mesa.Agent, "_ids", None)
    if registry is not None:
        registry.pop(model, None)
