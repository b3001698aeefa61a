"""The plot of a factorial experiment's effects (``plots/amplify_effects.png``), drawn from its
effects table only (:func:`sim.experiments.factorial.effects_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from sim.experiments.metrics import METRICS
from sim.output.plots import save_figure

MODE_COLORS = {"cross": "tab:blue", "isolated": "tab:orange"}


def compact(v: float, _pos: object = None) -> str:
    """Axis label: 1.5M, 200k, 12, 0.25."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def effects_plot(
    effects: pd.DataFrame, metrics: Sequence[str], path: Path, name: str, cols: int = 4
) -> Path:
    """One panel per figure: every main effect and two-way interaction (rows) with its 95%
    paired t interval, CROSS and ISOLATED side by side; the dashed line is 0 (no effect)."""
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.ravel())
    names = list(dict.fromkeys(effects["effect"]))
    y = np.arange(len(names))[::-1]
    for ax, metric in zip(flat, metrics, strict=False):
        sub = effects[effects["figure"] == metric]
        for k, mode in enumerate(MODE_COLORS):
            m = sub[sub["mode"] == mode].set_index("effect").reindex(names)
            est = m["estimate"].to_numpy(dtype=float)
            lo, hi = m["ci_low"].to_numpy(dtype=float), m["ci_high"].to_numpy(dtype=float)
            err = np.nan_to_num(np.vstack([est - lo, hi - est]))
            ax.errorbar(
                est,
                y + (0.5 - k) * 0.3,
                xerr=err,
                fmt="o",
                ms=3,
                lw=0.9,
                capsize=2,
                color=MODE_COLORS[mode],
                label=mode.upper(),
            )
        ax.axvline(0.0, color="black", ls="--", lw=0.8)
        ax.set_yticks(y, names, fontsize=7)
        ax.set_title(f"{METRICS[metric].label} ({METRICS[metric].unit})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(compact))
        ax.grid(axis="x", alpha=0.3)
    for ax in flat[len(metrics) :]:
        ax.axis("off")
    flat[0].legend(fontsize=7)
    fig.suptitle(
        f"Main effects and two-way interactions of the frictions ({name}; 95% paired t interval "
        "across seeds)",
        fontsize=11,
    )
    return save_figure(fig, path)
