"""What the dashboard's panels read: a run's tables up to the block shown.

A live model (:mod:`sim.viz.live`) and a replay of a run folder (:mod:`sim.viz.replay`) both
hand the panels a :class:`Snapshot`; the replay rebuilds the mempool's history from the
transactions and dropped tables (:func:`waiting_history`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SENDER_KINDS = ("trader", "liquidator", "oracle", "arbitrageur", "keeper")


@dataclass
class Snapshot:
    """The tables of a run up to ``block`` (the number of blocks shown) of ``total``.

    ``waiting``: per block shown (index), the transactions still in the mempool after it by
    sender kind (columns); ``priced_out``: those of them the last block left out for their fee
    (below the base fee or outbid for the space), None when unknown (a replay)."""

    mode: str  # "live" or "replay"
    title: str
    markets: list[str]
    block: int
    total: int
    blocks: pd.DataFrame
    liquidations: pd.DataFrame
    adl: pd.DataFrame
    dropped: pd.DataFrame  # with "block": the block shown it left the mempool in
    waiting: pd.DataFrame
    priced_out: pd.DataFrame | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def counter(self) -> str:
        """The block counter the page shows, e.g. ``block 12 / 540``."""
        return f"block {self.block} / {self.total}"

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per snapshot (a panel's image is drawn once per block shown)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def chain_to_block(blocks: pd.DataFrame) -> dict[int, int]:
    """Chain block number -> index of the block in the run (the ``block`` column)."""
    if blocks.empty:
        return {}
    return dict(zip(blocks["chain_block"].astype(int), blocks["block"].astype(int), strict=True))


def dropped_with_block(dropped: pd.DataFrame, blocks: pd.DataFrame) -> pd.DataFrame:
    """The dropped table with ``block``: the run's block it left the mempool in (rows of
    chain blocks outside ``blocks`` are left out)."""
    index = chain_to_block(blocks)
    out = dropped.copy()
    out["block"] = out["dropped_block"].map(index)
    return out[out["block"].notna()].astype({"block": int}).reset_index(drop=True)


def waiting_history(
    blocks: pd.DataFrame, transactions: pd.DataFrame, dropped: pd.DataFrame
) -> pd.DataFrame:
    """Per block of ``blocks``, the transactions in the mempool after it by sender kind,
    rebuilt from when each mined or dropped transaction was submitted and left: it waits
    after chain block ``c`` when ``submitted_block <= c < left``."""
    chain = blocks["chain_block"].to_numpy(dtype=np.int64) if not blocks.empty else np.array([])
    spans = pd.concat(
        [
            transactions[["sender_kind", "submitted_block", "block_number"]].set_axis(
                ["kind", "start", "end"], axis=1
            ),
            dropped[["sender_kind", "submitted_block", "dropped_block"]].set_axis(
                ["kind", "start", "end"], axis=1
            ),
        ],
        ignore_index=True,
    )
    kinds = _kinds(spans["kind"])
    data = {}
    for kind in kinds:
        rows = spans[spans["kind"] == kind]
        start = np.sort(rows["start"].to_numpy(dtype=np.int64))
        end = np.sort(rows["end"].to_numpy(dtype=np.int64))
        # waiting after c: started at or before c, minus those that left at or before c
        data[kind] = np.searchsorted(start, chain, "right") - np.searchsorted(end, chain, "right")
    index = blocks["block"].astype(int) if not blocks.empty else pd.Index([], dtype=int)
    return pd.DataFrame(data, index=pd.Index(index, name="block"), columns=kinds)


def _kinds(values: pd.Series) -> list[str]:
    """Sender kinds in a fixed order (known kinds first), without set-up transactions."""
    present = {str(v) for v in values.unique()} - {"setup"}
    return [k for k in SENDER_KINDS if k in present] + sorted(present - set(SENDER_KINDS))
