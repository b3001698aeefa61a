"""The report of ``liqsim stress``: result tables, the output folder, the terminal tables, the
Markdown report and the plot.

Output folder: ``positions.toml`` and ``scenario.toml`` (the inputs), ``positions``, ``stress``,
``moves`` and ``first_liquidated`` tables (CSV and Parquet; exact contract integers as decimal
strings), ``report.md`` and ``plots/stress.png``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from sim.output.markdown import markdown_table
from sim.output.plots import save_figure
from sim.stress.positions import StressInput

__all__ = [
    "EXACT_COLUMNS",
    "StressResult",
    "first_liquidated",
    "print_stress",
    "report_text",
    "stress_plot",
    "tabulate",
    "write_results",
]

#: Columns of the positions table holding exact contract integers (beyond int64).
EXACT_COLUMNS = ("size_base", "p0_e8", "equity_units", "maintenance_units", "liquidation_price_e8")


@dataclass
class StressResult:
    folder: Path
    positions: pd.DataFrame
    stress: pd.DataFrame
    moves: pd.DataFrame
    first: pd.DataFrame
    markets: list[str]
    input: StressInput
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ tables


def tabulate(
    folder: Path,
    inp: StressInput,
    markets: list[str],
    position_rows: list[dict[str, Any]],
    stress_rows: list[dict[str, Any]],
    notes: list[str],
) -> StressResult:
    """The result tables from the driver's rows (see :func:`sim.stress.driver.drive`)."""
    positions = pd.DataFrame(position_rows)
    for col in EXACT_COLUMNS:  # exact contract integers (beyond int64): kept as decimal strings
        positions[col] = positions[col].map(str)
    stress = pd.DataFrame(stress_rows)
    moves = (
        stress.groupby(["book", "book_mode", "move"], sort=False)
        .agg(
            equity_before_usd=("equity_before_usd", "sum"),
            equity_after_usd=("equity_after_usd", "sum"),
            liquidatable_subaccounts=("liquidatable", "sum"),
            liquidated_subaccounts=("liquidated", "sum"),
            notional_closed_usd=("notional_closed_usd", "sum"),
            penalty_usd=("penalty_usd", "sum"),
            bad_debt_usd=("bad_debt_usd", "sum"),
        )
        .reset_index()
    )
    first = first_liquidated(stress)
    return StressResult(folder, positions, stress, moves, first, markets, inp, notes)


def first_liquidated(stress: pd.DataFrame) -> pd.DataFrame:
    """Per book and subaccount: the smallest move at which it is liquidated (NaN: never), in the
    order they go."""
    rows = []
    for (book, sub), g in stress.groupby(["book", "subaccount"], sort=False):
        hit = g[g["liquidated"]]
        first = hit.loc[hit["move"].abs().idxmin()] if not hit.empty else None
        rows.append(
            {
                "book": book,
                "subaccount": sub,
                "mode": g["mode"].iloc[0],
                "markets": g["markets"].iloc[0],
                "account_name": g["account_name"].iloc[0],
                "first_liquidated_move": first["move"] if first is not None else math.nan,
                "equity_after_usd": first["equity_after_usd"] if first is not None else math.nan,
                "bad_debt_usd": first["bad_debt_usd"] if first is not None else math.nan,
            }
        )
    df = pd.DataFrame(rows)
    df["_k"] = df["first_liquidated_move"].abs().fillna(math.inf)
    return (
        df.sort_values(["book", "_k", "subaccount"], kind="stable")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


# ------------------------------------------------------------------ the output folder


def write_results(res: StressResult, argv: str = "") -> None:
    """Write the inputs, the tables, the plot and ``report.md`` to ``res.folder``."""
    folder, inp = res.folder, res.input
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plots").mkdir(exist_ok=True)
    shutil.copyfile(inp.path, folder / "positions.toml")
    (folder / "scenario.toml").write_text(inp.scenario.to_toml())
    for name, df in (
        ("positions", res.positions),
        ("stress", res.stress),
        ("moves", res.moves),
        ("first_liquidated", res.first),
    ):
        df.to_csv(folder / f"{name}.csv", index=False)
        df.to_parquet(folder / f"{name}.parquet", index=False)
    moved = "all markets" if len(res.markets) > 1 else res.markets[0]
    title = f"Stress of {inp.path.name}: {moved} moved together"
    stress_plot(res.moves, folder / "plots" / "stress.png", title)
    (folder / "report.md").write_text(report_text(res, argv))


def stress_plot(moves: pd.DataFrame, path: Path, title: str) -> Path:
    """Equity left after each move (liquidations included), the book as given and in the other
    margin mode, plus the number of subaccounts liquidated."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"as given": ("tab:blue", "-", "o"), "other mode": ("tab:orange", "--", "s")}
    for book, group in moves.groupby("book", sort=False):
        g = group.sort_values("move")
        color, ls, marker = styles.get(str(book), ("tab:gray", ":", "^"))
        label = f"{book} ({g['book_mode'].iloc[0]})"
        ax.plot(
            g["move"] * 100, g["equity_after_usd"], ls=ls, marker=marker, color=color, label=label
        )
        ax2.plot(
            g["move"] * 100,
            g["liquidated_subaccounts"],
            ls=ls,
            marker=marker,
            color=color,
            label=label,
        )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("price move (%)")
    ax.set_ylabel("equity left after liquidations (USD)")
    ax.set_title("Equity left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xlabel("price move (%)")
    ax2.set_ylabel("subaccounts liquidated")
    ax2.yaxis.get_major_locator().set_params(integer=True)
    ax2.set_title("Liquidated subaccounts")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


# ------------------------------------------------------------------ what is shown


def _pct(x: float) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "never"
    return f"{x:+.1%}"


def _usd(x: float) -> str:
    return f"{x:,.0f}"


def _positions_table(res: StressResult) -> pd.DataFrame:
    p = res.positions
    return pd.DataFrame(
        {
            "book": p["book"],
            "sub": p["subaccount"],
            "mode": p["mode"].str.upper(),
            "position": p["market"]
            + " "
            + p["side"]
            + " "
            + p["size"].map(lambda s: f"{abs(s):,.4g}"),
            "notional (USD)": p["notional_usd"].map(_usd),
            "collateral (USD)": p["collateral_usd"].map(_usd),
            "equity (USD)": p["equity_usd"].map(_usd),
            "price (USD)": p["price_usd"].map(lambda v: f"{v:,.2f}"),
            "liq. price (USD)": p["liquidation_price_usd"].map(
                lambda v: f"{v:,.2f}" if v > 0 else "none"
            ),
            "liq. move, this market": p["liquidation_move_this_market"].map(_pct),
            "liq. move, all its markets": p["liquidation_move_all_markets"].map(_pct),
        }
    )


def _moves_table(res: StressResult) -> pd.DataFrame:
    rows = []
    for move, g in res.stress.groupby("move", sort=False):
        row: dict[str, Any] = {
            "move": f"{move:+.0%}" if abs(move * 100 - round(move * 100)) < 1e-9 else f"{move:+.1%}"
        }
        for book, gb in g.groupby("book", sort=False):
            liq = gb[gb["liquidated"]]
            names = ", ".join(
                f"{r.subaccount}:{r.markets}"
                for r in liq.sort_values("liquidation_order").itertuples()
            )
            row[f"{book}: equity left"] = _usd(gb["equity_after_usd"].sum())
            row[f"{book}: liquidated (sub:markets)"] = names or "none"
            row[f"{book}: bad debt"] = _usd(gb["bad_debt_usd"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _first_table(res: StressResult) -> pd.DataFrame:
    f = res.first
    return pd.DataFrame(
        {
            "book": f["book"],
            "sub": f["subaccount"],
            "mode": f["mode"].str.upper(),
            "markets": f["markets"],
            "first liquidated at": f["first_liquidated_move"].map(
                lambda x: "already (no move)" if x == 0 else _pct(x)
            ),
            "equity left then (USD)": f["equity_after_usd"].map(
                lambda v: "" if math.isnan(v) else _usd(v)
            ),
        }
    )


def report_text(res: StressResult, argv: str = "") -> str:
    inp = res.input
    lines = [
        f"# Stress test of `{inp.path.name}`",
        "",
        f"Markets from scenario `{inp.scenario.name}`; current prices: "
        + ", ".join(f"{k} {v:,.2f}" for k, v in inp.prices.items())
        + ". "
        f"Moved together: {', '.join(res.markets)} (oracle and venue). Each move starts from the "
        "book as opened; "
        "liquidatable subaccounts are liquidated, most under water first.",
        "",
        *[f"**{n}**" for n in res.notes],
        "## Positions and liquidation prices (no move)",
        "",
        "Liquidation price: the contract view `liquidationPriceE8` (other markets' prices held). "
        "Liquidation move: the "
        "move of this market alone / of every market of the subaccount together at which the "
        "subaccount reaches its "
        "maintenance requirement.",
        "",
        markdown_table(_positions_table(res)),
        "",
        "## Per move",
        "",
        markdown_table(_moves_table(res)),
        "",
        "![stress](plots/stress.png)",
        "",
        "## What goes first",
        "",
        markdown_table(_first_table(res)),
        "",
    ]
    if argv:
        lines += ["```sh", argv, "```", ""]
    return "\n".join(lines)


def print_stress(res: StressResult) -> None:
    print(
        f"liqsim stress: {res.input.path} (markets from scenario '{res.input.scenario.name}'), "
        f"moves applied to {', '.join(res.markets)}"
    )
    for n in res.notes:
        print(f"note: {n}")
    for title, df in (
        ("Positions (no move)", _positions_table(res)),
        ("Per move", _moves_table(res)),
        ("Liquidated first", _first_table(res)),
    ):
        print(f"\n{title}")
        print(df.to_string(index=False))
