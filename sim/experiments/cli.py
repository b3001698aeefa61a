"""Command-line subcommands of the experiments (registered by sim.cli).

    liqsim compare SCENARIO --seeds N [--workers K] --out DIR [--set ...] [--blocks N]
    liqsim amplify SCENARIO --seeds N [--cells] [--workers K] --out DIR
    liqsim sweep   SCENARIO --grid path=v1,v2 [--grid ...] --seeds N [--workers K] --out DIR
                   [--backend local|ray]
    liqsim phase   SCENARIO --x path=v1,v2 --y path=w1,w2 --seeds N [--metric NAME]
                   [--counterfactual path=value|none] [--threshold T]
    liqsim sensitivity SCENARIO --method morris|sobol [--params path=low:high ...]
                   [--trajectories R | --samples N] [--metrics a,b]
    liqsim facts   EXPERIMENT_DIR [--where column=value ...] [--out FILE.md]

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


def add_chain_backend_option(p: argparse.ArgumentParser, *flags: str) -> None:
    """The EVM option (``flags``: ``--backend`` and ``--chain-backend`` on ``liqsim run``,
    ``--chain-backend`` on the experiments, whose ``--backend`` picks local processes or Ray)."""
    p.add_argument(
        *flags,
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


#: Default --seeds of ``liqsim amplify``: from a pilot on scenarios/default.toml, the fewest seeds
#: whose minimum detectable main effects meet the power target (docs/experiments.md, "Power").
AMPLIFY_SEEDS = 10


def _amplify_seed_note(n: int) -> str | None:
    """The note printed before running with fewer seeds than the default (None: no note)."""
    if n < 2:
        return (
            f"liqsim amplify: note: {n} seed gives no interval and no minimum detectable effect; "
            f"the default is {AMPLIFY_SEEDS} seeds"
        )
    if n < AMPLIFY_SEEDS:
        return (
            f"liqsim amplify: note: {n} seeds is fewer than the default {AMPLIFY_SEEDS}, chosen "
            "so that the default scenario's main effects meet the power target "
            "(docs/experiments.md); the report says which effects this run can detect"
        )
    return None


def _amplify(args: argparse.Namespace) -> int:
    from sim.experiments.amplify import cells, plan, run_amplify

    scenario, seeds, out = _setup(args, "amplify")
    short = args.cells
    specs = plan(scenario, seeds, short)
    _preflight(specs)
    if args.check:
        return _checked("amplify", specs, out)
    design = "short design" if short else "full factorial"
    print(
        f"liqsim amplify: scenario '{scenario.name}', {design}: {len(cells(short))} cells x 2 "
        f"modes x {len(seeds)} seeds ({args.workers} worker(s)) -> {out}",
        flush=True,
    )
    note = _amplify_seed_note(len(seeds))
    if note:
        print(note, file=sys.stderr, flush=True)
    res = _guarded(
        out,
        args.force,
        lambda: run_amplify(scenario, seeds, out, _options(args), short=short, argv=_argv()),
    )
    if isinstance(res, int):
        return res
    report = (res.folder / "report.md").read_text()
    start = report.find("## Headline")
    end = report.find("## Power")
    if start >= 0 and end > start:
        print()
        print(report[start:end].rstrip())
    if res.power_note.startswith("**Under-powered"):
        print(
            "\nliqsim amplify: note: "
            + res.power_note.replace("**", "")
            + " See report.md, Power.",
            file=sys.stderr,
        )
    else:
        print("\n" + res.power_note)
    return _finish(res.folder, res.batch)


def _sweep(args: argparse.Namespace) -> int:
    from sim.experiments.common import MAX_RUNS
    from sim.experiments.sweep import PLOT_METRICS, parse_grids, plan, run_sweep
    from sim.scenario.loader import ConfigError

    scenario, seeds, out = _setup(args, "sweep")
    grids = parse_grids(args.grid)
    metrics = _figures(args.figures, PLOT_METRICS, "--figures")
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


def _set_default(p: argparse.ArgumentParser, dest: str, value: Any, help_text: str) -> None:
    """Give one subcommand's shared option its own default (and say so in --help)."""
    for action in p._actions:
        if action.dest == dest:
            action.default, action.help = value, help_text
    p.set_defaults(**{dest: value})


def add_experiment_commands(sub: argparse._SubParsersAction) -> None:
    """Add compare, amplify, sweep, phase, sensitivity and facts to the ``liqsim`` parser."""
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
        description="Full factorial in gas, oracle lag, liquidation rush and endogenous impact "
        "(16 cells, from the frictionless baseline to all four) under CROSS and ISOLATED, on the "
        "same seeds: main effects, two-way interactions, amplification factors and the minimum "
        "detectable effect of each. --cells: the short design (baseline, each friction alone, "
        "all four).",
    )
    _common(p)
    _set_default(p, "seeds", AMPLIFY_SEEDS, f"number of seeds (default {AMPLIFY_SEEDS})")
    design = p.add_mutually_exclusive_group()
    design.add_argument(
        "--cells",
        action="store_true",
        help="short design for a quick look: baseline, each friction alone, all four (6 cells)",
    )
    design.add_argument(
        "--full-factorial",
        action="store_true",
        help="all 16 combinations of the four frictions (the default; kept for old commands)",
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

    _add_phase(sub)
    _add_sensitivity(sub)


def _print_report_part(folder: Path, start: str, end: str) -> None:
    report = (folder / "report.md").read_text()
    i, j = report.find(start), report.find(end)
    if i >= 0 and j > i:
        print()
        print(report[i:j].rstrip())


def _phase(args: argparse.Namespace) -> int:
    from sim.experiments.common import MAX_RUNS
    from sim.experiments.metrics import METRICS
    from sim.experiments.phase import parse_axis, parse_comparison, plan, run_phase
    from sim.scenario.loader import ConfigError

    scenario, seeds, out = _setup(args, "phase")
    x, y = parse_axis(args.x, "--x"), parse_axis(args.y, "--y")
    if args.metric not in METRICS:
        raise ConfigError(
            "--metric", f"unknown figure {args.metric!r} (known: {', '.join(METRICS)})"
        )
    comparison = parse_comparison(args.counterfactual)
    threshold = args.threshold
    if threshold is None and comparison.ratio:
        from sim.experiments.phase import DEFAULT_THRESHOLD

        threshold = DEFAULT_THRESHOLD
    runs = len(x.values) * len(y.values) * len(seeds) * (2 if comparison.ratio else 1)
    if runs > MAX_RUNS:
        raise ConfigError("--x", f"{runs:_} runs planned; at most {MAX_RUNS:_}")
    specs = plan(scenario, x, y, seeds, comparison)
    _preflight(specs)
    if args.check:
        return _checked("phase", specs, out)
    print(
        f"liqsim phase: scenario '{scenario.name}', {len(x.values)} x {len(y.values)} cells x "
        f"{len(seeds)} seeds x {2 if comparison.ratio else 1} arm(s), backend {args.backend} "
        f"({args.workers} worker(s)) -> {out}",
        flush=True,
    )
    res = _guarded(
        out,
        args.force,
        lambda: run_phase(
            scenario,
            x,
            y,
            seeds,
            out,
            _options(args),
            metric=args.metric,
            comparison=comparison,
            threshold=threshold,
            argv=_argv(),
        ),
    )
    if isinstance(res, int):
        return res
    _print_report_part(res.folder, "## ", "![phase diagram]")
    return _finish(res.folder, res.batch)


def _figures(text: str | None, default: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """Comma-separated figure names (``default`` when not given), each a known metric."""
    from sim.experiments.metrics import METRICS
    from sim.scenario.loader import ConfigError

    figures = tuple(f.strip() for f in text.split(",") if f.strip()) if text else default
    for f in figures:
        if f not in METRICS:
            raise ConfigError(flag, f"unknown figure {f!r} (known: {', '.join(METRICS)})")
    return figures


def _facts(args: argparse.Namespace) -> int:
    from sim.experiments.facts import facts_table, run_folders
    from sim.output.markdown import markdown_table
    from sim.scenario.loader import ConfigError

    where = {}
    for text in args.where:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError("--where", f"expected COLUMN=VALUE, got {text!r}")
        where[key] = value
    folder = Path(args.experiment)
    table = markdown_table(facts_table(run_folders(folder, where)))
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


def _sensitivity(args: argparse.Namespace) -> int:
    from sim.experiments.common import MAX_RUNS
    from sim.experiments.sensitivity import (
        DEFAULT_METRICS,
        DEFAULT_SAMPLES,
        DEFAULT_TRAJECTORIES,
        SAMPLE_SEED,
        Design,
        default_ranges,
        parse_ranges,
        plan,
        run_sensitivity,
    )
    from sim.scenario.loader import ConfigError

    scenario, seeds, out = _setup(args, "sensitivity")
    if args.method == "morris" and args.samples is not None:
        raise ConfigError("--samples", "is for --method sobol (Morris: --trajectories)")
    if args.method == "sobol" and args.trajectories is not None:
        raise ConfigError("--trajectories", "is for --method morris (Sobol: --samples)")
    metrics = _figures(args.metrics, DEFAULT_METRICS, "--metrics")
    params = parse_ranges(scenario, args.params) if args.params else default_ranges(scenario)
    design = Design(
        method=args.method,
        trajectories=DEFAULT_TRAJECTORIES if args.trajectories is None else args.trajectories,
        levels=args.levels,
        samples=DEFAULT_SAMPLES if args.samples is None else args.samples,
        seed=SAMPLE_SEED if args.sample_seed is None else args.sample_seed,
    )
    runs = design.points(len(params)) * len(seeds)
    if runs > MAX_RUNS:
        flag = "--trajectories" if args.method == "morris" else "--samples"
        raise ConfigError(flag, f"{runs:_} runs planned; at most {MAX_RUNS:_}")
    _, specs = plan(scenario, params, design, seeds)
    _preflight(specs)
    if args.check:
        return _checked("sensitivity", specs, out)
    print(
        f"liqsim sensitivity: scenario '{scenario.name}', {args.method}, {len(params)} parameters, "
        f"{design.points(len(params))} points x {len(seeds)} seed(s), backend {args.backend} "
        f"({args.workers} worker(s)) -> {out}",
        flush=True,
    )
    res = _guarded(
        out,
        args.force,
        lambda: run_sensitivity(
            scenario, params, design, seeds, out, _options(args), metrics=metrics, argv=_argv()
        ),
    )
    if isinstance(res, int):
        return res
    _print_report_part(res.folder, "## ", "![sensitivity]")
    return _finish(res.folder, res.batch)


def _add_phase(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phase",
        help="phase diagram: amplification over two parameters (heat map, tipping points)",
        description="Every cell of --x x --y runs every seed with the scenario as given and in "
        "a comparison arm (default: the frictionless twin, gas, oracle lag and endogenous "
        "impact off); the cell's value is the ratio of the metric's means. Resumable.",
    )
    _common(p)
    p.add_argument(
        "--x",
        required=True,
        metavar="PATH=V1,V2,...",
        help="x axis: a scenario parameter and its values, in order "
        "(markets.*.NAME sets every market)",
    )
    p.add_argument("--y", required=True, metavar="PATH=V1,V2,...", help="y axis (as --x)")
    p.add_argument(
        "--metric",
        default="liquidations",
        help="key figure mapped (default liquidations: defined in every frictionless twin; "
        "loss figures are often 0 there, map them with --counterfactual none)",
    )
    p.add_argument(
        "--counterfactual",
        action="append",
        default=None,
        metavar="PATH=VALUE|none",
        help="the comparison arm's overrides (repeatable; default run.gas_enabled=false "
        "run.oracle_lag_enabled=false run.endogenous_impact=false); 'none': no comparison, "
        "map the metric's mean",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="tipping point: the first value above this along each row and column "
        "(default 1.1 for an amplification; none for levels)",
    )
    p.set_defaults(func=_phase)


def _add_sensitivity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="global sensitivity (Morris or Sobol, SALib) of key figures to parameters",
        description="Sample the parameters over their ranges with SALib, run every point with "
        "every seed, and rank the parameters by Morris mu* or Sobol ST per figure. Default "
        "parameters: the stylized ones that matter for cascades (docs/experiments.md).",
    )
    _common(p)
    for action in p._actions:  # one seed per point by default: the design's size is the cost
        if action.dest == "seeds":
            action.default, action.help = 1, "seeds per sample point (default 1)"
    p.set_defaults(seeds=1)
    p.add_argument("--method", choices=("morris", "sobol"), default="morris")
    p.add_argument(
        "--params",
        action="extend",
        nargs="+",
        default=[],
        metavar="PATH=LOW:HIGH",
        help="parameters and ranges (markets.*.NAME sets every market; default: the stylized "
        "cascade parameters)",
    )
    p.add_argument(
        "--trajectories", type=int, default=None, help="Morris trajectories (default 10)"
    )
    p.add_argument("--levels", type=int, default=4, help="Morris grid levels (default 4)")
    p.add_argument(
        "--samples", type=int, default=None, help="Sobol base samples, a power of 2 (default 32)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="figures, comma-separated (default liquidations,notional_usd,shortfall_peak_usd,"
        "delay_mean_blocks)",
    )
    p.add_argument(
        "--sample-seed", type=int, default=None, help="seed of the SALib sample (fixed default)"
    )
    p.set_defaults(func=_sensitivity)

    p = sub.add_parser(
        "facts",
        help="stylized facts of an event scenario's runs beside history",
        description="Read the runs of an experiment folder (compare, amplify, sweep, phase) and "
        "print, for each stylized fact of the scenario (march2020, october2025; common facts "
        "otherwise), what history recorded, its source, and the model's mean over the runs "
        "with a 95%% t interval.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT_DIR", help="an experiment folder")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="only the runs whose results.csv column has this value (repeatable), e.g. "
        "run.gas_enabled=true",
    )
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    p.set_defaults(func=_facts)
