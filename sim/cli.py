"""The ``liqsim`` command line.

liqsim run [SCENARIO] --seed N --out DIR [--blocks N] [--set path.to.param=value ...]
liqsim demo
liqsim compare | amplify | sweep ...   (sim/experiments/cli.py)
liqsim stress POSITIONS.toml ...       (sim/stress/cli.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.scenario.loader import ConfigError
from sim.scenario.pricepath import PricePathError

EXIT_USAGE = 2


def _fmt_usd(x) -> str:
    return "n/a" if x is None else f"{x:,.0f} USD"


def print_summary(summary: dict, folder: Path | None) -> None:
    liq = summary["liquidations"]
    amp = summary.get("cascade_amplification", {})
    delay = summary["liquidation_delay_blocks"]
    print(
        f"\n{summary['blocks']} blocks, {summary['transactions']} transactions "
        f"({(summary['failed_transaction_share'] or 0):.1%} failed)"
    )
    print(
        f"liquidations: {liq['count']} ({liq['by_mode']}), "
        f"notional {_fmt_usd(liq['notional_usd'])}, "
        f"delay mean {delay['mean']} / max {delay['max']} blocks"
    )
    print(
        f"bad debt {_fmt_usd(summary['bad_debt_usd'])}, insurance drawdown "
        f"{_fmt_usd(summary['insurance_fund']['max_drawdown_usd'])}, trader losses "
        f"{_fmt_usd(summary['traders']['losses_usd'])}, "
        f"contagion positions {summary['contagion']['positions']}"
    )
    losses = summary.get("losses")
    if losses:
        neg = losses["unliquidated_negative_equity_usd"]
        short = losses["shortfall_usd"]
        print(
            f"unliquidated negative equity {_fmt_usd(neg['end'])} at the end (peak "
            f"{_fmt_usd(neg['peak'])}), shortfall marked to market {_fmt_usd(short['end'])} "
            f"(peak {_fmt_usd(short['peak'])})"
        )
    if amp.get("factor") is not None:
        print(
            f"cascade amplification: {amp['factor']:.2f} ({amp['liquidations']} liquidations vs "
            f"{amp['without_endogenous_impact']} without endogenous price impact)"
        )
    elif amp:
        print(f"cascade amplification: n/a ({amp.get('note')})")
    if folder is not None:
        print(f"\nresults: {folder}/  (tables *.parquet, summary.json)")
        print(f"plots:   {folder}/plots/  (prices.png, liquidations.png, fees.png, insurance.png)")


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sim.scenario.schema import resolve_scenario

    scenario = resolve_scenario(args.scenario, args.set, args.blocks)  # fails fast, before imports
    from sim.api import run_scenario

    out = Path(args.out) if args.out else Path("runs") / f"{scenario.name}-seed{args.seed}"
    blocks = scenario.run.blocks
    print(f"liqsim run: scenario '{scenario.name}', seed {args.seed}, {blocks} blocks -> {out}")
    with tqdm(total=scenario.run.blocks, unit="block", disable=args.quiet, file=sys.stderr) as bar:
        result = run_scenario(
            scenario,
            seed=args.seed,
            out=out,
            counterfactual=not args.no_counterfactual,
            progress=lambda _b: bar.update(1),
        )
    if not args.no_counterfactual and scenario.run.endogenous_impact:
        print(
            "(ran the same seed again without endogenous price impact for the amplification figure)"
        )
    print_summary(result.summary, result.folder)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sim.demo import run_demo

    run_demo(crash=args.crash)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liqsim", description="Liquidation cascades on real margin contracts"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write a run folder")
    run.add_argument(
        "scenario", nargs="?", default=None, help="scenario TOML (default: scenarios/default.toml)"
    )
    run.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    run.add_argument("--out", default=None, help="run folder (default runs/<scenario>-seed<N>)")
    run.add_argument("--blocks", type=int, default=None, help="override run.blocks")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario parameter, e.g. --set traders.count=50 (repeatable)",
    )
    run.add_argument(
        "--no-counterfactual",
        action="store_true",
        help="skip the second run without endogenous impact (no amplification figure)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo", help="scripted demo: cross vs isolated accounts through an oracle crash"
    )
    demo.add_argument(
        "--crash", type=float, default=0.15, help="fractional fall of the ETH price (default 0.15)"
    )
    demo.set_defaults(func=_demo)

    from sim.experiments.cli import add_experiment_commands  # compare, amplify, sweep
    from sim.stress.cli import add_stress_command

    add_experiment_commands(sub)
    add_stress_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, PricePathError) as exc:
        print(f"liqsim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"liqsim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
