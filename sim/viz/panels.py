"""The dashboard's panels as matplotlib figures of a :class:`~sim.viz.snapshot.Snapshot`
(no pyplot: figures are drawn in the server's threads), and the latest-liquidations table.

Every figure spans the whole run on its x axis (blocks 0..total), so a panel fills in from the
left as the run advances.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sim.output.plots import margin_series
from sim.viz.snapshot import Snapshot

DPI = 80
SIZE = (7.2, 3.9)
MODE_COLORS = {"cross": "#d62728", "isolated": "#9467bd"}
KIND_COLORS = {
    "trader": "#1f77b4",
    "liquidator": "#d62728",
    "oracle": "#2ca02c",
    "arbitrageur": "#ff7f0e",
    "keeper": "#8c564b",
}
LATEST_COLUMNS = {
    "block": "block",
    "kind": "kind",
    "mode": "mode",
    "markets": "markets",
    "notional_usd": "notional USD",
    "delay_blocks": "delay",
    "contagion_positions": "contagion pos.",
    "spillover_notional_usd": "spillover USD",
    "bad_debt_usd": "bad debt USD",
    "rescue": "owner's rescue",
}


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _figure(rows: int = 1, height_ratios: list[float] | None = None) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=height_ratios)[:, 0]
    return fig, list(axes)


def _frame(ax: Axes, snap: Snapshot) -> None:
    ax.set_xlim(0, max(snap.total, 1))
    ax.grid(alpha=0.3)
    if snap.blocks.empty:
        ax.text(
            0.5,
            0.5,
            "no block yet: press Step or ▶",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="gray",
        )


def prices_figure(snap: Snapshot) -> Figure:
    """Each market's external, oracle and venue price; liquidations marked on the oracle
    price (CROSS and ISOLATED)."""
    fig, axes = _figure(max(1, len(snap.markets)))
    b, liq = snap.blocks, snap.liquidations
    for ax, name in zip(axes, snap.markets, strict=False):
        _frame(ax, snap)
        ax.set_ylabel(f"{name} USD")
        if b.empty:
            continue
        ax.plot(b["block"], b[f"{name}_external_usd"], color="0.45", lw=1.2, label="external")
        ax.step(
            b["block"],
            b[f"{name}_oracle_usd"],
            where="post",
            color="#1f77b4",
            lw=1.2,
            label="oracle",
        )
        ax.plot(
            b["block"], b[f"{name}_venue_usd"], color="#ff7f0e", lw=0.9, alpha=0.8, label="venue"
        )
        margin = margin_series(b, name)
        if margin is not None:
            ax.plot(b["block"], margin, color="#2ca02c", lw=1.0, label="margin price")
        here = _liquidations_in(liq, name)
        oracle = b.set_index("block")[f"{name}_oracle_usd"]
        for mode, rows in here.groupby("mode"):
            ax.scatter(
                rows["block"],
                oracle.reindex(rows["block"]).to_numpy(),
                marker="v",
                s=36,
                color=MODE_COLORS.get(mode, "k"),
                zorder=3,
                label=f"liquidation ({mode})",
            )
        ax.legend(loc="lower left", fontsize=7, ncol=3)
    axes[0].set_title("Prices: external, oracle, venue; liquidations ▼", fontsize=10)
    axes[-1].set_xlabel("block")
    return fig


def _liquidations_in(liq: pd.DataFrame, market: str) -> pd.DataFrame:
    """The liquidations that closed a position in ``market``."""
    if liq.empty:
        return liq
    return liq[[market in str(ms).split(",") for ms in liq["markets"]]]


def liquidations_figure(snap: Snapshot) -> Figure:
    """Liquidations per block by margin mode, and cross-margin contagion: positions closed
    that would have survived on their own share of collateral, and spillover notional."""
    fig, (ax,) = _figure()
    _frame(ax, snap)
    liq = snap.liquidations
    counts = liq.groupby(["block", "mode"]).size().unstack(fill_value=0) if len(liq) else None
    bottom = None
    for mode in ("cross", "isolated"):
        if counts is None or mode not in counts:
            continue
        ax.bar(
            counts.index,
            counts[mode],
            bottom=bottom,
            width=0.9,
            color=MODE_COLORS[mode],
            label=f"{mode}",
        )
        bottom = counts[mode] if bottom is None else bottom + counts[mode]
    ax.set_ylabel("liquidations per block")
    ax.set_xlabel("block")
    twin = ax.twinx()
    if len(liq):
        by_block = liq.groupby("block")[["contagion_notional_usd", "spillover_notional_usd"]].sum()
        cum = by_block.cumsum() / 1e3
        for column, color, ls, label in (
            ("contagion_notional_usd", "k", "-", "contagion notional (cum.)"),
            ("spillover_notional_usd", "0.5", "--", "spillover notional (cum.)"),
        ):
            twin.step(cum.index, cum[column], where="post", color=color, lw=1.2, ls=ls, label=label)
    twin.set_ylabel("k USD (cumulative)")
    twin.set_ylim(bottom=0)
    n_cross = int((liq["mode"] == "cross").sum())
    contagion = int(liq["contagion_positions"].sum()) if len(liq) else 0
    ax.set_title(
        f"Liquidations: {len(liq)} ({n_cross} cross), contagion positions {contagion}",
        fontsize=10,
    )
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    if handles[0] or more[0]:
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=7)
    return fig


def fees_figure(snap: Snapshot) -> Figure:
    """Base fee, clearing tip and the wallets' suggested tip; block fullness."""
    fig, (top, bottom) = _figure(2, [1.6, 1])
    for ax in (top, bottom):
        _frame(ax, snap)
    b = snap.blocks
    if not b.empty:
        top.plot(b["block"], b["base_fee_gwei"], color="#1f77b4", label="base fee")
        top.plot(b["block"], b["clearing_tip_gwei"], color="#d62728", label="clearing tip")
        top.plot(
            b["block"], b["suggested_tip_gwei"], color="#2ca02c", ls="--", label="suggested tip"
        )
        top.legend(loc="upper left", fontsize=7)
        full = b["block_fill"] >= 0.999
        bottom.bar(
            b["block"],
            b["block_fill"],
            width=1.0,
            color=["#d62728" if f else "#7f7f7f" for f in full],
        )
    top.set_ylabel("gwei")
    top.set_title("Gas: base fee, tips; block fill (red: full)", fontsize=10)
    bottom.set_ylabel("fill")
    bottom.set_ylim(0, 1.05)
    bottom.set_xlabel("block")
    return fig


def mempool_figure(snap: Snapshot) -> Figure:
    """Transactions waiting in the mempool after each block by sender kind (stacked); those the
    block left out for their fee (live only); and what left unmined, by reason."""
    fig, (top, bottom) = _figure(2, [1.6, 1])
    for ax in (top, bottom):
        _frame(ax, snap)
    w = snap.waiting
    if len(w) and len(w.columns):
        top.stackplot(
            w.index,
            *(w[c] for c in w.columns),
            labels=list(w.columns),
            step="post",
            colors=[KIND_COLORS.get(c, "0.6") for c in w.columns],
            alpha=0.8,
        )
    if snap.priced_out is not None and len(snap.priced_out.columns):
        top.step(
            snap.priced_out.index,
            snap.priced_out.sum(axis=1),
            where="post",
            color="k",
            lw=1.2,
            label="priced out (last block)",
        )
    top.set_ylabel("waiting txs")
    title = "Mempool by sender: waiting" + (
        ", priced out" if snap.priced_out is not None else " (replay: no fee reasons)"
    )
    top.set_title(title, fontsize=10)
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="upper left", fontsize=7, ncol=3)
    d = snap.dropped
    if len(d):
        counts = d.groupby(["block", "reason"]).size().unstack(fill_value=0)
        base = None
        for reason in counts.columns:
            bottom.bar(counts.index, counts[reason], bottom=base, width=0.9, label=reason)
            base = counts[reason] if base is None else base + counts[reason]
        bottom.legend(loc="upper left", fontsize=7, ncol=3)
    bottom.set_ylabel("left unmined")
    bottom.set_xlabel("block")
    return fig


def losses_figure(snap: Snapshot) -> Figure:
    """Insurance fund, recorded bad debt, unliquidated negative equity and the shortfall;
    auto-deleveraging fills (cumulative)."""
    fig, (ax,) = _figure()
    _frame(ax, snap)
    b = snap.blocks
    if not b.empty:
        for col, label, color in (
            ("insurance_fund_usd", "insurance fund", "#2ca02c"),
            ("bad_debt_usd", "bad debt", "#d62728"),
            ("negative_equity_usd", "negative equity", "#ff7f0e"),
            ("shortfall_usd", "shortfall", "k"),
        ):
            ax.plot(b["block"], b[col] / 1e3, label=label, color=color)
        ax.legend(loc="upper left", fontsize=7)
    ax.set_ylabel("k USD")
    ax.set_xlabel("block")
    twin = ax.twinx()
    adl = snap.adl
    if len(adl):
        per = adl.groupby("block").size().cumsum()
        twin.step(per.index, per, where="post", color="#9467bd", lw=1.2, ls=":")
    twin.set_ylabel("ADL fills (cum.)", color="#9467bd")
    twin.set_ylim(bottom=0)
    ax.set_title(f"Insurance, shortfall, ADL ({len(adl)} fills)", fontsize=10)
    return fig


def latest_liquidations(snap: Snapshot, n: int = 10) -> pd.DataFrame:
    """The last ``n`` liquidations, newest first, with readable columns."""
    liq = snap.liquidations
    cols = [c for c in LATEST_COLUMNS if c in liq.columns]
    out = liq[cols].tail(n).iloc[::-1].rename(columns=LATEST_COLUMNS)
    for c in ("notional USD", "spillover USD", "bad debt USD"):
        if c in out:
            out[c] = out[c].round(0)
    return out.reset_index(drop=True)


def key_figures(snap: Snapshot) -> str:
    """One line of the run so far: liquidations, bad debt, shortfall, insurance fund."""
    b, liq = snap.blocks, snap.liquidations
    if b.empty:
        return "no block yet"
    last = b.iloc[-1]
    return (
        f"liquidations {len(liq)} | bad debt {last['bad_debt_usd']:,.0f} USD | shortfall "
        f"{last['shortfall_usd']:,.0f} USD | insurance fund {last['insurance_fund_usd']:,.0f} USD"
        f" | base fee {last['base_fee_gwei']:,.1f} gwei | backlog {int(last['backlog'])} txs"
    )


PANELS = {
    "prices": prices_figure,
    "liquidations": liquidations_figure,
    "fees": fees_figure,
    "mempool": mempool_figure,
    "losses": losses_figure,
}


def panel_png(snap: Snapshot, name: str) -> bytes:
    """A panel's PNG, drawn once per snapshot."""
    return snap.cached(f"png:{name}", lambda: png(PANELS[name](snap)))
