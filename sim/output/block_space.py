"""Block space and crowding-out figures of a run, from its tables: how full blocks were, how
long each kind of sender waited, and what became of the transactions that prevent
liquidations (traders' rescues and the oracle's reports)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sim.output.jsonable import json_float as _f

RESCUE_LABELS = frozenset({"topup", "derisk", "stop"})  # agents.trader's rescue actions (RESCUES)
LONG_WAIT_BLOCKS = 3  # a rescue or report that waited this long was crowded out for a while


def longest_run(flags: pd.Series) -> int:
    """Longest run of consecutive True values."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def _delays(delays: pd.Series) -> dict[str, Any]:
    if delays.empty:
        return {"count": 0, "mean": None, "p90": None, "max": None}
    return {
        "count": len(delays),
        "mean": _f(delays.mean()),
        "p90": _f(delays.quantile(0.9)),
        "max": int(delays.max()),
    }


def _crowded(included: pd.DataFrame, dropped: pd.DataFrame) -> dict[str, Any]:
    """Sent, included, waited long, and left the mempool unmined (not counting replacements,
    which are the same transaction re-priced)."""
    gone = dropped[dropped["reason"] != "replaced"] if not dropped.empty else dropped
    delays = included["inclusion_delay_blocks"] if not included.empty else pd.Series(dtype=int)
    return {
        "included": len(included),
        "waited_3_or_more_blocks": int((delays >= LONG_WAIT_BLOCKS).sum()),
        "never_included": len(gone),
        "never_included_by_reason": {
            str(k): int(v) for k, v in gone.groupby("reason").size().items()
        }
        if not gone.empty
        else {},
        "inclusion_delay_blocks": _delays(delays),
    }


def block_space(blocks: pd.DataFrame, tx: pd.DataFrame, dropped: pd.DataFrame) -> dict[str, Any]:
    """Fullness, waiting by kind of sender, and crowding-out of rescues and oracle reports.

    A block is *full* when demand was left out: background gas that wanted in at its base fee
    did not fit (our own transactions left waiting show in the delays)."""
    if blocks.empty or "block_fill" not in blocks:
        return {}
    fill = blocks["block_fill"]
    full = blocks["background_gas_demanded"] > blocks["background_gas_used"]
    by_kind = (
        {
            str(k): _delays(g["inclusion_delay_blocks"])
            for k, g in tx.groupby("sender_kind", sort=True)
        }
        if not tx.empty
        else {}
    )

    def pick(frame: pd.DataFrame, mask_of) -> pd.DataFrame:
        return frame[mask_of(frame)] if not frame.empty else frame

    def is_rescue(f: pd.DataFrame) -> pd.Series:
        return (f["sender_kind"] == "trader") & f["label"].isin(RESCUE_LABELS)

    def is_report(f: pd.DataFrame) -> pd.Series:
        return f["sender_kind"] == "oracle"

    return {
        "full_blocks": int(full.sum()),
        "full_block_share": _f(full.mean()),
        "longest_full_streak_blocks": longest_run(full),
        "mean_fill": _f(fill.mean()),
        "peak_stress": _f(blocks["background_stress"].max())
        if "background_stress" in blocks
        else None,
        "inclusion_delay_blocks_by_kind": by_kind,
        "rescues": _crowded(pick(tx, is_rescue), pick(dropped, is_rescue)),
        "oracle_reports": _crowded(pick(tx, is_report), pick(dropped, is_report)),
    }
