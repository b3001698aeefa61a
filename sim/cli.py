"""The ``liqsim`` command line.

liqsim run [SCENARIO] --seed N --out DIR [--blocks N] [--set path.to.param=value ...]
           [--force] [--check]
liqsim demo [--crash F]
liqsim status DIR ...                   what a run or experiment folder holds (stale: killed)
liqsim viz [SCENARIO] [--replay DIR] [--port N] [--host H] [--no-browser]   dashboard (sim/viz)
liqsim compare | amplify | sweep | phase | sensitivity | facts ...   (sim/experiments/cli.py)
liqsim stress POSITIONS.toml ...       (sim/stress/cli.py)

Exit status: 0 done; 1 the run failed (or some runs of an experiment), what was written is kept
and its status says why; 2 a user error (bad scenario, value, file or ``--out``), one message,
no traceback, found before any set-up; 128 + N interrupted by signal N (130 SIGINT, 143
SIGTERM), the folder says ``interrupted``. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

from sim.scenario.loader import ConfigError
from sim.scenario.pricepath import PricePathError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _fmt_usd(x) -> str:
    return "n/a" if x is None else f"{x:,.0f} USD"


def _error(message: str) -> None:
    print(f"liqsim: error: {message}", file=sys.stderr)


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
    print_feedback(summary)
    print_block_space(summary)
    w = summary.get("waterfall")
    if w and (w["liquidations_partial"]["count"] or w["backstops"]["count"] or w["adl_fills"]):
        print(
            f"waterfall: {w['liquidations_partial']['count']} partial liquidations, "
            f"{w['backstops']['count']} backstop takeovers, {w['deleveragings']['count']} "
            f"auto-deleveragings ({w['adl_fills']} fills against "
            f"{w['adl_counterparty_accounts']} accounts)"
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


def print_block_space(summary: dict) -> None:
    """The crowding-out line: full blocks, and how rescues and oracle reports fared."""
    b = summary.get("block_space")
    if not b:
        return
    rescue, report = b["rescues"], b["oracle_reports"]
    rescue_delay = rescue["inclusion_delay_blocks"]["mean"]
    print(
        f"block space: {b['full_blocks']} full blocks ({(b['full_block_share'] or 0):.0%}, "
        f"longest streak {b['longest_full_streak_blocks']}); rescues {rescue['included']} "
        f"included (mean wait {rescue_delay if rescue_delay is not None else 'n/a'} blocks, "
        f"{rescue['waited_3_or_more_blocks']} waited 3+), {rescue['never_included']} never "
        f"included; oracle reports waiting 3+ blocks: {report['waited_3_or_more_blocks']}"
    )


def print_feedback(summary: dict) -> None:
    """The feedback line (share of each market's fall at its trough not in the exogenous path,
    peak impact, liquidations it caused) and the spillover line of CROSS liquidations."""
    fb = summary.get("feedback")
    if fb:
        shares = ", ".join(
            f"{m} {_pct(v['trough']['feedback_share'])}" for m, v in fb["markets"].items()
        )
        print(
            f"feedback: share of the fall caused by forced flow at the trough {shares}; peak "
            f"impact {_pct(fb['peak_impact'])}; {fb['liquidations_caused']} liquidations not "
            f"liquidatable at that block's exogenous prices, "
            f"{fb.get('liquidations_feedback_only', 'n/a')} not at any later block's either"
        )
    c = summary.get("contagion", {})
    if "spillover_notional_usd" in c:
        print(
            f"spillover: {_fmt_usd(c['spillover_notional_usd'])} closed by CROSS liquidations in "
            f"markets that were not their cause; {c['liquidations_after_spillover']} "
            f"liquidations followed its impact"
        )


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


# ------------------------------------------------------------------ run


def _check_run(args: argparse.Namespace):
    """Every check of ``liqsim run`` that needs no set-up (milliseconds, no heavy import):
    scenario and overrides, --blocks, --seed, the price path of that seed, --out."""
    from sim.output.runfolder import check_out
    from sim.scenario.schema import check_blocks, check_price_path, check_seed, resolve_scenario

    check_blocks(args.blocks)
    scenario = resolve_scenario(args.scenario, args.set, args.blocks)
    check_seed(args.seed)
    check_price_path(scenario, args.seed)
    out = Path(args.out) if args.out else Path("runs") / f"{scenario.name}-seed{args.seed}"
    check_out(out, force=args.force)
    return scenario, out


def _run(args: argparse.Namespace) -> int:
    from sim.output.runfolder import RunFolder, interrupt_signal

    scenario, out = _check_run(args)
    blocks = scenario.run.blocks
    if args.check:
        print(
            f"liqsim run --check: OK: scenario '{scenario.name}', seed {args.seed}, {blocks} "
            f"blocks, {scenario.traders.count} traders -> {out}"
        )
        return EXIT_OK
    folder = RunFolder(out, force=args.force)  # claims --out before the slow imports
    try:
        from tqdm import tqdm

        from sim.api import run_scenario
    except BaseException:
        folder.abandon()
        raise
    print(f"liqsim run: scenario '{scenario.name}', seed {args.seed}, {blocks} blocks -> {out}")
    done = {"blocks": 0}

    def progress(block: int) -> None:
        done["blocks"] = block
        bar.update(1)

    try:
        with tqdm(total=blocks, unit="block", disable=args.quiet, file=sys.stderr) as bar:
            result = run_scenario(
                scenario,
                seed=args.seed,
                out=folder,
                counterfactual=not args.no_counterfactual,
                progress=progress,
            )
    except (ConfigError, PricePathError) as exc:
        if not folder.published:
            raise  # found at set-up: nothing was written
        _error(f"{exc}; what the run recorded is in {folder.path}/ (status.json: 'incomplete')")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = interrupt_signal(exc)
        where = folder.path if folder.published else folder.work
        print(
            f"liqsim: interrupted after {done['blocks']} blocks; {where}/status.json says "
            "'interrupted' and the folder keeps the tables of those blocks",
            file=sys.stderr,
        )
        return 128 + signum
    except Exception as exc:
        where = folder.path if folder.published else folder.work
        _error(
            f"the run failed after {done['blocks']} blocks: {type(exc).__name__}: {exc}; what it "
            f"recorded is in {where}/ (status.json: 'incomplete', with the cause)"
        )
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return EXIT_FAILED
    if not args.no_counterfactual and scenario.run.endogenous_impact:
        print(
            "(ran the same seed again without endogenous price impact for the amplification figure)"
        )
    print_summary(result.summary, result.folder)
    return EXIT_OK


# ------------------------------------------------------------------ demo, status


def _demo(args: argparse.Namespace) -> int:
    crash = args.crash
    if not (math.isfinite(crash) and 0 < crash <= 0.99):
        raise ConfigError(
            "--crash", f"must be a fraction between 0 and 0.99 (0.15 = a 15% fall), got {crash}"
        )
    from sim.demo import run_demo

    run_demo(crash=crash)
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from sim.output.runfolder import folder_state

    code = EXIT_OK
    for path in args.folders:
        state = folder_state(path)
        print(state.describe())
        if state.state == "missing":
            code = max(code, EXIT_USAGE)
        elif state.state != "complete":
            code = max(code, EXIT_FAILED)
    return code


# ------------------------------------------------------------------ viz


def _viz(args: argparse.Namespace) -> int:
    """The dashboard (sim/viz): every check first (exit 2), then serve until Ctrl-C."""
    from sim.scenario.schema import check_seed
    from sim.viz.server import check_request, serve

    check_seed(args.seed)
    request = check_request(
        args.scenario, args.replay, args.host, args.port, args.seed, not args.no_browser
    )
    serve(request)
    return EXIT_OK


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    from sim.experiments.cli import add_chain_backend_option

    parser = argparse.ArgumentParser(
        prog="liqsim", description="Liquidation cascades on real margin contracts"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write a run folder")
    run.add_argument(
        "scenario", nargs="?", default=None, help="scenario TOML (default: scenarios/default.toml)"
    )
    run.add_argument("--seed", type=int, default=1, help="random seed, 0 to 2**63-1 (default 1)")
    run.add_argument(
        "--out",
        default=None,
        help="run folder, which must not exist (default runs/<scenario>-seed<N>)",
    )
    run.add_argument("--blocks", type=int, default=None, help="override run.blocks (<= 100,000)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario parameter, e.g. --set traders.count=50 (repeatable)",
    )
    add_chain_backend_option(run, "--backend", "--chain-backend")
    run.add_argument(
        "--no-counterfactual",
        action="store_true",
        help="skip the second run without endogenous impact (no amplification figure)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it exists (once the new run ends; only liqsim folders)",
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="validate the scenario, seed and --out, then exit without running",
    )
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo", help="scripted demo: cross vs isolated accounts through an oracle crash"
    )
    demo.add_argument(
        "--crash",
        type=float,
        default=0.15,
        help="fractional fall of the ETH price, 0 to 0.99 (default 0.15)",
    )
    demo.set_defaults(func=_demo)

    status = sub.add_parser(
        "status",
        help="what a run or experiment folder holds: complete, incomplete, interrupted, "
        "running, or stale (its process was killed)",
    )
    status.add_argument("folders", nargs="+", metavar="DIR", help="run or experiment folder")
    status.set_defaults(func=_status)

    viz = sub.add_parser(
        "viz",
        help="dashboard in the browser: a live run (Mesa SolaraViz) or the replay of a run folder",
    )
    viz.add_argument(
        "scenario", nargs="?", default=None, help="scenario TOML (default: scenarios/default.toml)"
    )
    viz.add_argument("--replay", metavar="DIR", default=None, help="replay a finished run folder")
    viz.add_argument("--seed", type=int, default=1, help="initial seed of the live run (default 1)")
    viz.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    viz.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    viz.add_argument("--no-browser", action="store_true", help="do not open a browser")
    viz.set_defaults(func=_viz)

    from sim.experiments.cli import add_experiment_commands  # compare, amplify, sweep, ...
    from sim.stress.cli import add_stress_command

    add_experiment_commands(sub)
    add_stress_command(sub)
    return parser


def _safe_streams() -> None:
    """Paths and values from ``sys.argv`` may hold undecodable bytes: print them escaped
    rather than fail on them."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    from sim.output.runfolder import (
        OutputWriteError,
        interrupt_signal,
        interrupts_as_exceptions,
    )

    _safe_streams()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with interrupts_as_exceptions():
            return args.func(args)
    except (ConfigError, PricePathError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except FileNotFoundError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OutputWriteError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print("liqsim: interrupted", file=sys.stderr)
        return 128 + interrupt_signal(exc)


if __name__ == "__main__":
    sys.exit(main())
