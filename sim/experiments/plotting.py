"""Plots of the experiments, drawn from their results and summary tables only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sim.experiments.metrics import METRICS
from sim.output.plots import save_figure

MODE_COLORS = {"cross": "tab:blue", "isolated": "tab:orange"}


def _title(metric: str) -> str:
    m = METRICS[metric]
    return f"{m.label} ({m.unit})"


def _grid(n: int, cols: int = 3):
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _fmt_diff(metric: str, row: pd.Series) -> str:
    f = METRICS[metric].fmt
    if np.isnan(row["diff_mean"]):
        return "Δ n/a"
    est = f.format(row["diff_mean"])
    if np.isnan(row["diff_ci_low"]):
        return f"Δ = {est} (CI n/a)"
    return f"Δ = {est} [{f.format(row['diff_ci_low'])}, {f.format(row['diff_ci_high'])}]"


def compare_plot(
    results: pd.DataFrame, summary: pd.DataFrame, metrics: Sequence[str], path: Path, name: str
) -> Path:
    """One panel per metric: each seed's CROSS and ISOLATED values joined by a line (paired),
    the arm means as bars, and the mean paired difference with its 95% CI in the title."""
    fig, axes = _grid(len(metrics))
    ok = results[results["state"] == "complete"]
    for ax, f in zip(axes, metrics, strict=True):
        wide = ok.pivot_table(index="seed", columns="arm", values=f, aggfunc="first")
        wide = wide.reindex(columns=["cross", "isolated"])
        means = wide.mean()
        ax.bar(
            [0, 1],
            means.to_numpy(),
            color=[MODE_COLORS["cross"], MODE_COLORS["isolated"]],
            alpha=0.35,
            width=0.6,
        )
        for _, r in wide.iterrows():
            ax.plot([0, 1], [r["cross"], r["isolated"]], color="0.35", lw=0.8, marker="o", ms=3)
        ax.set_xticks([0, 1], ["CROSS", "ISOLATED"])
        row = summary.set_index("figure").loc[f]
        ax.set_title(f"{_title(f)}\n{_fmt_diff(f, row)}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"CROSS vs ISOLATED, paired by seed ({name}; lines = seeds, bars = means)", fontsize=11
    )
    return save_figure(fig, path)


def amplify_factor_plot(
    summary: pd.DataFrame, metrics: Sequence[str], cells: Sequence[str], path: Path, name: str
) -> Path:
    """Amplification factor (cell / frictionless baseline) per friction cell, CROSS and ISOLATED
    side by side, with bootstrap CIs; the dashed line is 1 (no amplification)."""
    fig, axes = _grid(len(metrics), cols=min(2, len(metrics)))
    cells = [c for c in cells if c != "baseline"]
    x = np.arange(len(cells))
    for ax, f in zip(axes, metrics, strict=True):
        s = summary[summary["figure"] == f]
        for k, mode in enumerate(["cross", "isolated"]):
            m = s[s["mode"] == mode].set_index("cell").reindex(cells)
            est = m["factor"].to_numpy(dtype=float)
            lo, hi = (
                m["factor_ci_low"].to_numpy(dtype=float),
                m["factor_ci_high"].to_numpy(dtype=float),
            )
            err = np.vstack(
                [np.where(np.isnan(lo), 0, est - lo), np.where(np.isnan(hi), 0, hi - est)]
            )
            err = np.where(np.isnan(err), 0, err)
            ax.bar(
                x + (k - 0.5) * 0.38,
                np.nan_to_num(est),
                width=0.38,
                color=MODE_COLORS[mode],
                label=mode.upper(),
                yerr=err,
                capsize=3,
                error_kw={"lw": 0.8},
            )
        ax.axhline(1.0, color="black", ls="--", lw=0.8)
        ax.set_xticks(
            x,
            [c.replace("+", "+\n") for c in cells],
            fontsize=7 if len(cells) > 6 else 8,
            rotation=0,
        )
        ax.set_title(f"amplification of {METRICS[f].label}", fontsize=10)
        ax.set_ylabel("× frictionless baseline")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"How much each friction amplifies the cascade ({name}; 95% bootstrap CI across seeds)",
        fontsize=11,
    )
    return save_figure(fig, path)


def amplify_levels_plot(
    summary: pd.DataFrame, metrics: Sequence[str], cells: Sequence[str], path: Path, name: str
) -> Path:
    """Mean metric per cell and mode, with t intervals across seeds."""
    fig, axes = _grid(len(metrics), cols=min(4, len(metrics)))
    x = np.arange(len(cells))
    for ax, f in zip(axes, metrics, strict=True):
        s = summary[summary["figure"] == f]
        for k, mode in enumerate(["cross", "isolated"]):
            m = s[s["mode"] == mode].set_index("cell").reindex(cells)
            est = m["mean"].to_numpy(dtype=float)
            lo, hi = m["mean_ci_low"].to_numpy(dtype=float), m["mean_ci_high"].to_numpy(dtype=float)
            err = np.nan_to_num(np.vstack([est - lo, hi - est]))
            ax.bar(
                x + (k - 0.5) * 0.38,
                np.nan_to_num(est),
                width=0.38,
                color=MODE_COLORS[mode],
                label=mode.upper(),
                yerr=err,
                capsize=2,
                error_kw={"lw": 0.7},
            )
        ax.set_xticks(x, cells, fontsize=6, rotation=60, ha="right")
        ax.set_title(_title(f), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Key figures per friction cell ({name}; means over seeds, 95% t interval)", fontsize=11
    )
    return save_figure(fig, path)


def sweep_plot(
    summary: pd.DataFrame, params: Sequence[str], metrics: Sequence[str], path: Path, name: str
) -> Path:
    """One parameter: line plots with CI bands. Two: heat maps of the mean. More: the mean of
    each metric against each parameter, averaged over the others."""
    if len(params) == 2:
        return _sweep_heatmaps(summary, params, metrics, path, name)
    rows = [(p, f) for p in params for f in metrics]
    fig, axes = _grid(len(rows), cols=len(metrics))
    for ax, (p, f) in zip(axes, rows, strict=True):
        col = f"{f}_mean"
        if len(params) == 1:
            s = summary.sort_values(p, key=_sort_key)
            xs = _axis_values(s[p])
            ax.plot(xs, s[col], marker="o", color="tab:red")
            lo, hi = s[f"{f}_ci_low"].to_numpy(dtype=float), s[f"{f}_ci_high"].to_numpy(dtype=float)
            if not np.isnan(lo).all():
                ax.fill_between(xs, lo, hi, color="tab:red", alpha=0.2, lw=0)
        else:
            s = (
                summary.groupby(p, sort=False)[col]
                .mean()
                .reset_index()
                .sort_values(p, key=_sort_key)
            )
            ax.plot(_axis_values(s[p]), s[col], marker="o", color="tab:red")
        if not _numeric(summary[p]):
            ax.set_xticks(range(len(s)), [str(v) for v in s[p]])
        ax.set_xlabel(p, fontsize=8)
        ax.set_title(_title(f), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Sweep of {', '.join(params)} ({name}; mean over seeds"
        + (", 95% t band)" if len(params) == 1 else ")"),
        fontsize=11,
    )
    return save_figure(fig, path)


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _sort_key(s: pd.Series) -> pd.Series:
    return s if _numeric(s) else s.astype(str)


def _axis_values(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=float) if _numeric(s) else np.arange(len(s))


def _sweep_heatmaps(
    summary: pd.DataFrame, params: Sequence[str], metrics: Sequence[str], path: Path, name: str
) -> Path:
    px, py = params
    fig, axes = _grid(len(metrics), cols=2)
    for ax, f in zip(axes, metrics, strict=True):
        grid = summary.pivot_table(index=py, columns=px, values=f"{f}_mean", aggfunc="first")
        grid = grid.sort_index(axis=0, key=_sort_key).sort_index(axis=1, key=_sort_key)
        im = ax.imshow(grid.to_numpy(dtype=float), origin="lower", aspect="auto", cmap="magma_r")
        ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns], fontsize=8)
        ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index], fontsize=8)
        ax.set_xlabel(px, fontsize=8)
        ax.set_ylabel(py, fontsize=8)
        for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(
                    j,
                    i,
                    METRICS[f].fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > np.nanmean(grid.to_numpy(dtype=float)) else "black",
                )
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_title(_title(f), fontsize=9)
    fig.suptitle(f"Sweep of {px} × {py} ({name}; mean over seeds)", fontsize=11)
    return save_figure(fig, path)
