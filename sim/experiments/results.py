"""Regenerate the results the README quotes: ``make results`` (or ``python -m
sim.experiments.results --out runs/results``).

Runs (or resumes: finished runs are reused) the experiments behind the README's results on the
anvil backend, then writes ``docs/results.md``: the seeds and the time each experiment took, the
full factorial's report (main effects, interactions, power) on the default scenario, gas friction
on vs off paired over seeds on default and march2020, the march2020 regimes where rescues get
crowded out, the stylized facts of march2020 and october2025 beside history, and the Morris
screening of the stylized parameters on the default scenario.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from sim.experiments.facts import facts_table, run_folders
from sim.experiments.stats import Interval, mean_ci, paired_difference
from sim.experiments.sweep import summarize_grid
from sim.output.markdown import markdown_table

ROOT = Path(__file__).resolve().parents[2]
GAS_METRICS = (
    "liquidations",
    "delay_mean_blocks",
    "negative_equity_peak_usd",
    "shortfall_peak_usd",
    "trader_losses_usd",
    "feedback_share_trough",
    "full_block_share",
    "liquidations_rescue_priced_out",
)
REGIME_METRICS = (
    "liquidations",
    "delay_mean_blocks",
    "negative_equity_peak_usd",
    "liquidations_rescue_priced_out",
)


#: The phase diagram's x axis: every market's public 1% depth, thinning from BTC's to a tenth of
#: ETH's (the scenario's ETH 46 M USD and BTC 115 M USD: Kaiko), so the tipping point along a row
#: is the depth at which the cascade tips as the market thins.
PHASE_DEPTHS_USD = ("115000000", "46000000", "20000000", "10000000", "5000000")
#: The frictionless twin with the scenario's own depths: without endogenous impact the depth is
#: never read, so one comparison run per seed and margin mode serves the whole row.
PHASE_COMPARISON = tuple(
    arg
    for override in (
        "run.gas_enabled=false",
        "run.oracle_lag_enabled=false",
        "run.endogenous_impact=false",
        "markets.0.external_depth_usd=46000000",
        "markets.1.external_depth_usd=115000000",
    )
    for arg in ("--counterfactual", override)
)


@dataclass(frozen=True)
class Step:
    """One experiment: its folder name under ``--out`` and its ``liqsim`` arguments."""

    name: str
    argv: tuple[str, ...]


def steps(factorial_seeds: int, seeds: int) -> list[Step]:
    n, f = str(seeds), str(factorial_seeds)
    phase_argv = (
        "phase",
        "scenarios/default.toml",
        "--x",
        "markets.*.external_depth_usd=" + ",".join(PHASE_DEPTHS_USD),
        "--y",
        "traders.cross_fraction=0,1",
        *PHASE_COMPARISON,
        "--seeds",
        f,
        "--runs-dir",  # shared with the losses map below
        "{out}/phase-runs",
    )
    return [
        Step("amplify-default", ("amplify", "scenarios/default.toml", "--seeds", f)),
        Step(
            "gas-default",
            (
                "sweep",
                "scenarios/default.toml",
                "--grid",
                "run.gas_enabled=true,false",
                "--seeds",
                n,
            ),
        ),
        Step(
            "gas-march2020",
            (
                "sweep",
                "scenarios/march2020.toml",
                "--grid",
                "run.gas_enabled=true,false",
                "--seeds",
                n,
            ),
        ),
        Step(
            "regimes-march2020",
            (
                "sweep",
                "scenarios/march2020.toml",
                "--grid",
                "background.ramp_blocks=10,240",
                "--grid",
                "liquidators.bid_cap_gwei=60,500",
                "--seeds",
                n,
            ),
        ),
        Step(
            "facts-october2025",
            ("sweep", "scenarios/october2025.toml", "--grid", "run.gas_enabled=true", "--seeds", n),
        ),
        Step("amplify-march2020", ("amplify", "scenarios/march2020.toml", "--seeds", n)),
        Step("amplify-october2025", ("amplify", "scenarios/october2025.toml", "--seeds", n)),
        Step("phase-default", phase_argv),
        Step(
            # the same runs mapped on trader losses: counts miss the losses of accounts left
            # under water (no new run: the runs folder is the phase diagram's)
            "phase-default-losses",
            (*phase_argv, "--metric", "trader_losses_usd"),
        ),
        Step(
            "sensitivity-default",
            ("sensitivity", "scenarios/default.toml", "--method", "morris", "--trajectories", "10"),
        ),
    ]


def run_step(step: Step, out: Path, workers: int) -> float:
    """Run (or resume) one experiment with the ``liqsim`` command (``{out}`` in its arguments
    stands for ``out``); returns its wall time in seconds."""
    argv = [
        *(a.replace("{out}", str(out)) for a in step.argv),
        "--chain-backend",
        "anvil",
        "--workers",
        str(workers),
        "--quiet",
        "--out",
        str(out / step.name),
    ]
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "sim.cli", *argv])
    if code != 0:
        raise SystemExit(f"liqsim {' '.join(argv)} exited {code}")
    return time.perf_counter() - start


def paired_table(folder: Path, column: str, on: str, off: str, metrics) -> pd.DataFrame:
    """Each metric's mean with ``column = on`` and ``= off`` and their paired difference over
    the seeds both have (95% t intervals)."""
    r = pd.read_csv(folder / "results.csv")
    r[column] = r[column].astype(str).str.lower()
    a = r[r[column] == on].set_index("seed").sort_index()
    b = r[r[column] == off].set_index("seed").sort_index()
    seeds = a.index.intersection(b.index)
    a, b = a.loc[seeds], b.loc[seeds]
    return pd.DataFrame(
        [
            {
                "metric": m,
                f"{column}={on}": mean_ci(a[m]).text(),
                f"{column}={off}": mean_ci(b[m]).text(),
                "paired difference": paired_difference(a[m], b[m]).text(),
            }
            for m in metrics
        ]
    )


def grouped_table(folder: Path, columns: list[str], metrics) -> pd.DataFrame:
    """Each group's mean of each metric (95% t intervals) over its seeds: the sweep's own
    per-point summary (:func:`sim.experiments.sweep.summarize_grid`), as text."""
    summary = summarize_grid(pd.read_csv(folder / "results.csv"), columns, metrics)
    table = summary[columns].copy()
    for m in metrics:
        table[m] = [
            Interval(est, low, high, int(n), "t").text()
            for est, low, high, n in zip(
                summary[f"{m}_mean"],
                summary[f"{m}_ci_low"],
                summary[f"{m}_ci_high"],
                summary["seeds"],
                strict=True,
            )
        ]
    return table


def report_sections(folder: Path, images: Path | None = None, prefix: str = "") -> str:
    """An experiment's report with its headings one level down; with ``images`` (a folder next
    to the document), its plots are copied there as ``PREFIX<name>.png`` and linked as
    ``img/PREFIX<name>.png`` (a prefix keeps two experiments of one kind apart)."""
    text = (folder / "report.md").read_text()
    if images is not None:
        images.mkdir(parents=True, exist_ok=True)
        for png in (folder / "plots").glob("*.png"):
            shutil.copyfile(png, images / f"{prefix}{png.name}")
        text = text.replace("](plots/", f"]({images.name}/{prefix}")
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def compute_s(folder: Path) -> tuple[int, float]:
    """(runs, summed wall time of the runs in seconds) from each run's ``timing.json``."""
    total, n = 0.0, 0
    for timing in (folder / "runs").glob("*/timing.json"):
        total += float(json.loads(timing.read_text()).get("total_s", 0.0))
        n += 1
    return n, total


def write_results(
    out: Path,
    times: dict[str, float],
    seeds: int,
    factorial_seeds: int,
    workers: int = 2,
    images: Path | None = None,
) -> str:
    def timing() -> str:
        lines = []
        for name, t in times.items():
            n, total = compute_s(out / name)
            if n == 0:
                lines.append(
                    f"- `{name}`: no runs of its own (it maps another experiment's runs); this "
                    f"regeneration {t / 60:.1f} min"
                )
                continue
            lines.append(
                f"- `{name}`: {n} runs, {total / 60:.1f} min of run time (about "
                f"{total / 60 / workers:.1f} min on {workers} workers); this regeneration "
                f"{t / 60:.1f} min"
            )
        return "\n".join(lines)

    parts = [
        "# Results",
        "",
        "<!-- Generated by `make results` (sim/experiments/results.py); do not edit by hand. -->",
        "",
        f"Regenerated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on the anvil backend: the "
        f"default scenario's full factorial and phase diagram with {factorial_seeds} seeds, the "
        f"other experiments with {seeds} seeds (1..N). What each experiment costs on this "
        "machine (finished runs are reused, so a rerun only redraws):",
        "",
        timing(),
        "",
        "## Gas friction on vs off, paired over seeds",
        "",
        "### default (EIP-1559)",
        "",
        markdown_table(
            paired_table(out / "gas-default", "run.gas_enabled", "true", "false", GAS_METRICS)
        ),
        "",
        "### march2020 (first-price auction)",
        "",
        markdown_table(
            paired_table(out / "gas-march2020", "run.gas_enabled", "true", "false", GAS_METRICS)
        ),
        "",
        "## march2020 regimes: fee level that keeps rising, liquidators' bid cap",
        "",
        markdown_table(
            grouped_table(
                out / "regimes-march2020",
                ["background.ramp_blocks", "liquidators.bid_cap_gwei"],
                REGIME_METRICS,
            )
        ),
        "",
        "## Stylized facts against history",
        "",
        "### march2020",
        "",
        markdown_table(
            facts_table(run_folders(out / "gas-march2020", {"run.gas_enabled": "true"}))
        ),
        "",
        "### october2025",
        "",
        markdown_table(facts_table(run_folders(out / "facts-october2025", {}))),
        "",
        report_sections(out / "amplify-default", images),
        "",
        report_sections(out / "amplify-march2020", images, prefix="march2020_"),
        "",
        report_sections(out / "amplify-october2025", images, prefix="october2025_"),
        "",
        report_sections(out / "phase-default", images),
        "",
        report_sections(out / "phase-default-losses", images, prefix="losses_"),
        "",
        report_sections(out / "sensitivity-default", images),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.experiments.results", description=__doc__)
    p.add_argument(
        "--out", default="runs/results", help="experiment folders (default runs/results)"
    )
    p.add_argument("--seeds", type=int, default=10, help="seeds of the sweeps (default 10)")
    p.add_argument(
        "--factorial-seeds", type=int, default=20, help="seeds of the full factorial (default 20)"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--doc", default=str(ROOT / "docs" / "results.md"), help="file to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    times = {}
    for step in steps(args.factorial_seeds, args.seeds):
        times[step.name] = run_step(step, out, args.workers)
        print(f"{step.name}: {times[step.name] / 60:.1f} min", flush=True)
    doc = Path(args.doc)
    images = doc.parent / "img"
    text = write_results(out, times, args.seeds, args.factorial_seeds, args.workers, images)
    doc.write_text(text)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
