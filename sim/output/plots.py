"""PNG plots of a run, drawn from its tables only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

PNG_META = {"Software": None}  # no version stamp: byte-identical PNGs for identical tables


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG (110 dpi, no version stamp; parent folders
    created) and close it. Every liqsim plot, of a run or of an experiment, is saved here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)
    return path


def margin_series(blocks: pd.DataFrame, market: str) -> pd.Series | None:
    """The price margin was checked at in ``market``, where it is not simply the oracle's
    (``exchange.margin_price`` = mark or venue); None otherwise, and for run folders written
    before the column existed."""
    col = f"{market}_margin_usd"
    if col not in blocks or blocks[col].equals(blocks[f"{market}_oracle_usd"]):
        return None
    return blocks[col]


def plot_prices(
    blocks: pd.DataFrame, liquidations: pd.DataFrame, names: list[str], path: Path
) -> Path:
    fig, axes = plt.subplots(
        len(names), 1, figsize=(10, 3.2 * len(names)), sharex=True, squeeze=False
    )
    for ax, n in zip(axes[:, 0], names, strict=True):
        ax.plot(
            blocks["block"],
            blocks[f"{n}_external_usd"],
            label="external (CEX)",
            color="black",
            lw=1.2,
        )
        ax.step(
            blocks["block"],
            blocks[f"{n}_oracle_usd"],
            where="post",
            label="oracle (on-chain)",
            color="tab:blue",
        )
        ax.plot(
            blocks["block"],
            blocks[f"{n}_venue_usd"],
            label="venue (vAMM mark)",
            color="tab:orange",
            lw=0.9,
        )
        margin = margin_series(blocks, n)
        if margin is not None:
            ax.plot(blocks["block"], margin, label="margin price", color="tab:green", lw=1.0)
        hit = (
            liquidations[liquidations["markets"].str.contains(n, regex=False)]
            if not liquidations.empty
            else liquidations
        )
        if not hit.empty:
            y = blocks.set_index("block").loc[hit["block"], f"{n}_oracle_usd"]
            ax.scatter(hit["block"], y, marker="x", color="tab:red", zorder=5, label="liquidation")
        ax.set_ylabel(f"{n} (USD)")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("block")
    fig.suptitle("External, oracle and venue prices")
    return save_figure(fig, path)


def plot_liquidations(blocks: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(
        blocks["block"],
        blocks["liquidations"],
        color="tab:red",
        width=1.0,
        label="liquidations per block",
    )
    ax.set_xlabel("block")
    ax.set_ylabel("liquidations")
    ax2 = ax.twinx()
    ax2.plot(
        blocks["block"],
        blocks["liquidated_notional_usd"].cumsum() / 1e6,
        color="black",
        label="cumulative notional",
    )
    ax2.set_ylabel("cumulative notional (M USD)")
    ax.plot(
        blocks["block"],
        blocks["liquidatable_accounts"],
        color="tab:purple",
        lw=0.8,
        label="liquidatable accounts",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Liquidations")
    return save_figure(fig, path)


def plot_fees(blocks: pd.DataFrame, path: Path) -> Path:
    fig, (ax, ax3) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    ax.plot(blocks["block"], blocks["base_fee_gwei"], label="base fee", color="black")
    ax.plot(
        blocks["block"],
        blocks["mean_priority_fee_gwei"],
        label="mean priority fee (ours)",
        color="tab:green",
        lw=0.8,
    )
    ax.plot(
        blocks["block"],
        blocks["max_priority_fee_gwei"],
        label="max priority fee (ours)",
        color="tab:red",
        lw=0.8,
    )
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("gwei")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax3.plot(
        blocks["block"],
        blocks["background_gas_used"] / 1e6,
        label="background gas",
        color="tab:gray",
    )
    ax3.plot(blocks["block"], blocks["gas_used"] / 1e6, label="our gas", color="tab:blue")
    ax3.plot(blocks["block"], blocks["backlog"], label="backlog (txs)", color="tab:orange")
    ax3.set_ylabel("M gas / txs")
    ax3.set_xlabel("block")
    ax3.legend(fontsize=8)
    fig.suptitle("Block space: fees and demand")
    return save_figure(fig, path)


def plot_insurance(blocks: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(
        blocks["block"],
        blocks["insurance_fund_usd"] / 1e3,
        label="insurance fund",
        color="tab:blue",
    )
    ax.set_ylabel("insurance fund (k USD)")
    ax.set_xlabel("block")
    ax2 = ax.twinx()
    ax2.plot(
        blocks["block"], blocks["bad_debt_usd"] / 1e3, label="cumulative bad debt", color="tab:red"
    )
    ax2.set_ylabel("bad debt (k USD)")
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title("Insurance fund and bad debt")
    return save_figure(fig, path)


def plot_run(tables: dict[str, pd.DataFrame], names: list[str], folder: Path) -> list[Path]:
    """All plots of one run into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks, liq = tables["blocks"], tables["liquidations"]
    return [
        plot_prices(blocks, liq, names, folder / "prices.png"),
        plot_liquidations(blocks, folder / "liquidations.png"),
        plot_fees(blocks, folder / "fees.png"),
        plot_insurance(blocks, folder / "insurance.png"),
    ]
