"""Command-line subcommands of the experiments (registered by sim.cli).

    liqsim compare SCENARIO --seeds N [--workers K] --out DIR [--set ...] [--blocks N]
    liqsim amplify SCENARIO --seeds N [--full-factorial] [--workers K] --out DIR
    liqsim sweep   SCENARIO --grid path=v1,v2 [--grid ...] --seeds N [--workers K] --out DIR
                   [--backend local|ray]

User errors (bad scenario, grid, seeds, ``--out``, missing Ray) raise ``ConfigError`` before
anything runs; ``liqsim`` prints them without a traceback and exits with status 2. A run that
fails inside an experiment is recorded (its folder says why) and the command exits with status
1 after writing everything else; rerunning retries only the missing runs. An interrupted
experiment (SIGINT, SIGTERM) says so in ``experiment.json``, keeps its finished runs and exits
with 128 + the signal number. ``--check`` validates everything (every planned run's scenario and
price path, ``--out``) and exits without running.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily at run time: `liqsim --help` stays fast
    from collections.abc import Callable

    from sim.experiments.common import RunOptions
    from sim.experiments.runs import RunSpec

EXIT_RUNS_FAILED = 1


def _argv() -> str:
    return "liqsim " + " ".join(shlex.quote(a) for a in sys.argv[1:])


CHAIN_BACKENDS = ("pyevm", "anvil")  # sim.chain.backend.BACKEND_NAMES (not imported: fast start)


class _ChainBackendAction(argparse.Action):
    """``--backend anvil`` is ``--set chain.backend=anvil``, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        overrides = list(getattr(namespace, "set", None) or [])
        namespace.set = [*overrides, f"chain.backend={values}"]


def add_chain_backend_option(p: argparse.ArgumentParser, flag: str) -> None:
    """The EVM option (``flag``: ``--backend`` on ``liqsim run``, ``--chain-backend`` on the
    experiments, whose ``--backend`` picks local processes or Ray)."""
    p.add_argument(
        flag,
        choices=CHAIN_BACKENDS,
        action=_ChainBackendAction,
        dest="chain_backend",
        help="EVM backend: pyevm (embedded, the default) or anvil (a local anvil process, "
        "faster; same results); same as --set chain.backend=NAME",
    )


def _common(p: argparse.ArgumentParser, backend: bool = True) -> None:
    p.add_argument(
        "scenario", nargs="?", default=None, help="scenario TOML (default: scenarios/default.toml)"
    )
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument(
        "--seed-start",
        type=int,
        default=1,
        help="first seed (default 1): seeds are start..start+N-1",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel worker processes (default: the number of CPUs)",
    )
    p.add_argument(
        "--out", default=None, help="experiment folder (default runs/<command>-<scenario>)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario parameter for every run (repeatable)",
    )
    p.add_argument("--blocks", type=int, default=None, help="override run.blocks")
    add_chain_backend_option(p, "--chain-backend")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="where run folders live (default OUT/runs); share one between experiments "
        "to reuse runs",
    )
    p.add_argument(
        "--run-plots", action="store_true", help="also draw each run's own plots (slower)"
    )
    if backend:
        p.add_argument(
            "--backend",
            choices=("local", "ray"),
            default="local",
            help="local processes (default) or Ray tasks",
        )
        p.add_argument(
            "--ray-address",
            default=None,
            help="with --backend ray: address of a running Ray cluster "
            "(default: start a local instance)",
        )
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it holds another experiment (deletes it, runs included); "
        "without it, rerunning into the same folder resumes",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate every input (scenario, planned runs, seeds, --out) and exit without running",
    )


def _setup(args: argparse.Namespace, command: str):
    """Every check that needs no planning: scenario, --blocks, seeds, workers, --out."""
    from sim.experiments.common import check_experiment_out, seed_list
    from sim.experiments.runs import check_workers
    from sim.scenario.schema import check_blocks, resolve_scenario

    check_blocks(args.blocks)
    scenario = resolve_scenario(args.scenario, args.set, args.blocks)
    seeds = seed_list(args.seeds, args.seed_start)
    check_workers(args.workers)
    out = Path(args.out) if args.out else Path("runs") / f"{command}-{scenario.name}"
    check_experiment_out(out, command, force=args.force)
    return scenario, seeds, out


def _preflight(specs: list[RunSpec]) -> None:
    """The planned runs: not more than the limit, each one's price path within range."""
    import tomllib

    from sim.experiments.common import MAX_RUNS
    from sim.scenario.loader import ConfigError, to_dict
    from sim.scenario.schema import check_price_path, scenario_from_mapping

    keys = {s.key for s in specs}
    if len(keys) > MAX_RUNS:
        raise ConfigError("--seeds", f"{len(keys):_} runs planned; at most {MAX_RUNS:_}")
    scenarios: dict[str, Any] = {}
    checked: set[tuple[str, int]] = set()
    for spec in specs:
        if spec.fingerprint not in scenarios:
            sc = scenario_from_mapping(tomllib.loads(spec.scenario_toml))
            inputs = (sc.markets, sc.run.blocks, sc.run.block_time_s, sc.crash, sc.price_path)
            scenarios[spec.fingerprint] = (sc, repr(to_dict(inputs)))
        sc, path_inputs = scenarios[spec.fingerprint]
        if (path_inputs, spec.seed) not in checked:
            checked.add((path_inputs, spec.seed))
            check_price_path(sc, spec.seed)


def _checked(command: str, specs: list[RunSpec], out: Path) -> int:
    from sim.experiments.common import unique_runs

    print(f"liqsim {command} --check: OK: {unique_runs(specs)} runs planned -> {out}")
    return 0


def _guarded(out: Path, force: bool, work: Callable[[], Any]) -> Any:
    """Run the experiment ``work``; give its folder a true final state however it ends."""
    from sim.experiments.common import ended_state, mark_ended, replace_experiment_out
    from sim.output.runfolder import interrupt_signal
    from sim.scenario.loader import ConfigError
    from sim.scenario.pricepath import PricePathError

    if force:
        replace_experiment_out(out)
    try:
        return work()
    except KeyboardInterrupt as exc:
        state, extra = ended_state(exc)
        mark_ended(out, state, **extra)
        print(
            f"liqsim: interrupted ({extra['signal']}); finished runs are kept under {out}; rerun "
            "the same command to resume",
            file=sys.stderr,
        )
        return 128 + interrupt_signal(exc)
    except (ConfigError, PricePathError) as exc:
        mark_ended(out, "incomplete", cause="input", error=str(exc))
        raise
    except Exception as exc:
        state, extra = ended_state(exc)
        mark_ended(out, state, **extra)
        print(
            f"liqsim: error: the experiment stopped: {type(exc).__name__}: {exc}; finished runs "
            f"are kept under {out}; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_RUNS_FAILED


def _finish(folder: Path, batch) -> int:
    print(
        f"\n{batch.executed} runs executed, {batch.skipped} reused; results in {folder}/ "
        "(report.md, results.csv, summary.csv, plots/)"
    )
    if batch.failed:
        for o in batch.failed:
            print(
                f"liqsim: run {o.spec.key} failed: {o.error} (folder {o.folder})", file=sys.stderr
            )
        print("liqsim: rerun the same command to retry the failed runs only", file=sys.stderr)
        return EXIT_RUNS_FAILED
    return 0


def _options(args: argparse.Namespace) -> RunOptions:
    """The run options every experiment command passes on to its runs."""
    from sim.experiments.common import RunOptions

    return RunOptions(
        workers=args.workers,
        backend=args.backend,
        runs_dir=args.runs_dir,
        run_plots=args.run_plots,
        ray_address=args.ray_address,
        quiet=args.quiet,
    )


def _compare(args: argparse.Namespace) -> int:
    from sim.experiments.common import fmt_value
    from sim.experiments.compare import _interval_text, plan, run_compare
    from sim.output.markdown import markdown_table

    scenario, seeds, out = _setup(args, "compare")
    specs = plan(scenario, seeds)
    _preflight(specs)
    if args.check:
        return _checked("compare", specs, out)
    print(
        f"liqsim compare: scenario '{scenario.name}', seeds {seeds[0]}..{seeds[-1]}, CROSS vs "
        "ISOLATED "
        f"({2 * len(seeds)} runs, {args.workers} worker(s)) -> {out}",
        flush=True,
    )
    res = _guarded(
        out, args.force, lambda: run_compare(scenario, seeds, out, _options(args), argv=_argv())
    )
    if isinstance(res, int):
        return res
    s = res.summary
    import pandas as pd

    table = pd.DataFrame(
        {
            "figure": s["label"],
            "CROSS": [fmt_value(f, v) for f, v in zip(s["figure"], s["cross_mean"], strict=True)],
            "ISOLATED": [
                fmt_value(f, v) for f, v in zip(s["figure"], s["isolated_mean"], strict=True)
            ],
            "ISOLATED - CROSS [95% CI]": [_interval_text(r) for _, r in s.iterrows()],
        }
    )
    print()
    print(markdown_table(table))
    return _finish(res.folder, res.batch)


def _amplify(args: argparse.Namespace) -> int:
    from sim.experiments.amplify import plan, run_amplify

    scenario, seeds, out = _setup(args, "amplify")
    specs = plan(scenario, seeds, args.full_factorial)
    _preflight(specs)
    if args.check:
        return _checked("amplify", specs, out)
    n_cells = 16 if args.full_factorial else 6
    print(
        f"liqsim amplify: scenario '{scenario.name}', {n_cells} cells x 2 modes x {len(seeds)} "
        "seeds "
        f"({args.workers} worker(s)) -> {out}",
        flush=True,
    )
    res = _guarded(
        out,
        args.force,
        lambda: run_amplify(
            scenario,
            seeds,
            out,
            _options(args),
            full_factorial=args.full_factorial,
            argv=_argv(),
        ),
    )
    if isinstance(res, int):
        return res
    report = (res.folder / "report.md").read_text()
    start = report.find("## Headline")
    end = report.find("![amplification factors]")
    if start >= 0 and end > start:
        print()
        print(report[start:end].rstrip())
    return _finish(res.folder, res.batch)


def _sweep(args: argparse.Namespace) -> int:
    from sim.experiments.common import MAX_RUNS
    from sim.experiments.metrics import METRICS
    from sim.experiments.sweep import PLOT_METRICS, parse_grids, plan, run_sweep
    from sim.scenario.loader import ConfigError

    scenario, seeds, out = _setup(args, "sweep")
    grids = parse_grids(args.grid)
    metrics = (
        tuple(f.strip() for f in args.figures.split(",") if f.strip())
        if args.figures
        else PLOT_METRICS
    )
    for f in metrics:
        if f not in METRICS:
            raise ConfigError("--figures", f"unknown figure {f!r} (known: {', '.join(METRICS)})")
    points = 1
    for v in grids.values():
        points *= len(v)
    if points * len(seeds) > MAX_RUNS:
        raise ConfigError(
            "--grid",
            f"{points:_} grid points x {len(seeds)} seeds = {points * len(seeds):_} runs; at most "
            f"{MAX_RUNS:_}",
        )
    specs = plan(scenario, grids, seeds)
    _preflight(specs)
    if args.check:
        return _checked("sweep", specs, out)
    print(
        f"liqsim sweep: scenario '{scenario.name}', {points} grid points x {len(seeds)} seeds, "
        f"backend {args.backend} "
        f"({args.workers} worker(s)) -> {out}",
        flush=True,
    )
    res = _guarded(
        out,
        args.force,
        lambda: run_sweep(
            scenario,
            grids,
            seeds,
            out,
            _options(args),
            plot_metrics=metrics,
            argv=_argv(),
        ),
    )
    if isinstance(res, int):
        return res
    report = (res.folder / "report.md").read_text()
    start, end = report.find("| "), report.find("![sweep]")
    if start >= 0 and end > start:
        print()
        print(report[start:end].rstrip())
    return _finish(res.folder, res.batch)


def add_experiment_commands(sub: argparse._SubParsersAction) -> None:
    """Add compare, amplify and sweep to the ``liqsim`` parser."""
    p = sub.add_parser(
        "compare",
        help="CROSS vs ISOLATED margin, paired on the same seeds (common random numbers)",
        description="Run every seed twice (all traders CROSS, then ISOLATED) and report the mean "
        "paired "
        "difference of each key figure with a 95%% t interval across seeds.",
    )
    _common(p)
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "amplify",
        help="amplification of the cascade by gas, oracle lag, liquidation rush, impact",
        description="Frictionless baseline, each friction alone and all combined (or every "
        "combination "
        "with --full-factorial), under CROSS and ISOLATED, on the same seeds.",
    )
    _common(p)
    p.add_argument(
        "--full-factorial", action="store_true", help="all 16 combinations of the four frictions"
    )
    p.set_defaults(func=_amplify)

    p = sub.add_parser(
        "sweep",
        help="parameter grid x seeds, in parallel, resumable",
        description="Cartesian product of --grid values x seeds; a rerun skips finished runs.",
    )
    _common(p)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="PATH=V1,V2,...",
        help="a scenario parameter and its values "
        "(repeatable; e.g. oracle.deviation_threshold=0.005,0.01)",
    )
    p.add_argument(
        "--figures",
        default=None,
        help="figures to plot, comma-separated "
        "(default liquidations,notional_usd,bad_debt_usd,delay_mean_blocks)",
    )
    p.set_defaults(func=_sweep)
