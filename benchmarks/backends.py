"""The default scenario on each EVM backend: time, CPU, equivalence, and the sweep projection.

    .venv/bin/python benchmarks/backends.py [--seed 1] [--repeat 1] [--cores 2] [--profile]
    make bench-backends

Each backend runs the default scenario once per repeat as an experiment run does (no
counterfactual, no plots: ``sim.experiments.runs.execute_run``), in a fresh Python process so
the imports are timed. Reported per backend: wall time of the process, CPU time of the run (the
Python process after its imports, which a sweep worker pays once, plus the anvil process it
started: ``RUSAGE_CHILDREN``) and the import time. Then the ratio, runs per
hour per core (3,600 / CPU seconds of a run), the projected time of a 1,000-seed default sweep
on ``--cores`` cores (CPU per run x 1,000 / cores: what the sweep costs when the cores are its
own; the wall-time figure beside it includes whatever else the machine was running), and
whether the two backends' economic tables are identical (hashes aside). ``--profile`` prints
where the anvil run's Python time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP_RUNS = 1_000
GOAL_MIN = 30.0


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def worker(backend: str, seed: int, out: str, profile: str) -> None:
    """One experiment run in this fresh process; prints its figures as JSON."""
    started = time.perf_counter()
    import sim.api  # noqa: F401  (what execute_run imports: counted here, once per worker)
    from sim.experiments.runs import execute_run
    from sim.scenario.schema import resolve_scenario

    imported = time.perf_counter() - started
    import_cpu = _cpu_s(resource.RUSAGE_SELF)
    scenario = resolve_scenario("scenarios/default.toml", [f"chain.backend={backend}"], None)
    run = lambda: execute_run(scenario.to_toml(), seed, out, plots=False)  # noqa: E731
    if profile:
        import cProfile

        cProfile.runctx("result = run()", globals(), locals_ := {"run": run}, profile)
        result = locals_["result"]
    else:
        result = run()
    timing = json.loads((Path(out) / "timing.json").read_text())
    print(
        json.dumps(
            {
                "state": result["state"],
                "error": result["error"],
                "import_s": imported,
                "python_cpu_s": _cpu_s(resource.RUSAGE_SELF) - import_cpu,
                "anvil_cpu_s": _cpu_s(resource.RUSAGE_CHILDREN),
                "transactions": timing["transactions"],
                "blocks": timing["blocks"],
            }
        )
    )


def measure(backend: str, seed: int, out: Path, profile: str = "") -> dict:
    """Run the worker in a fresh process; its wall time is measured from outside."""
    command = [sys.executable, __file__, "--worker", backend, str(seed), str(out)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *(["--profile-to", profile] if profile else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["state"] != "complete":
        raise SystemExit(f"{backend} run failed: {figures['error']}")
    figures["wall_s"] = wall
    figures["cpu_s"] = figures["python_cpu_s"] + figures["anvil_cpu_s"]
    return figures


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["cpu_s"])


def _profile_summary(path: str, top: int = 14) -> None:
    import pstats

    stats = pstats.Stats(path)
    groups: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = "other"
        for marker in (
            "sim/chain/anvil",
            "sim/model",
            "sim/market",
            "sim/exchange",
            "sim/wallet",
            "sim/output",
            "sim/scenario",
            "agents/",
            "web3",
            "eth_abi",
            "eth_utils",
            "pandas",
            "numpy",
            "mesa",
            "socket",
            "json",
        ):
            if marker in filename:
                key = marker
                break
        if filename.startswith("~") and key == "other":
            key = "builtins (socket waits, json, ...)"
        groups[key] = groups.get(key, 0.0) + tottime
    total = sum(groups.values())
    print(f"\nwhere the anvil run's Python time goes (cProfile, own time, {total:.1f} s in all):")
    for key, seconds in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {key:40s} {seconds:6.1f} s  {seconds / total:5.1%}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="runs per backend (best CPU kept)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--profile", action="store_true", help="profile one more anvil run")
    ap.add_argument("--worker", nargs=3, metavar=("BACKEND", "SEED", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        backend, seed, out = args.worker
        worker(backend, int(seed), out, args.profile_to)
        return 0

    sys.path.insert(0, str(ROOT))
    from sim.output.runfolder import read_tables
    from tests.test_anvil_equivalence import economic_differences

    tmp = Path(tempfile.mkdtemp(prefix="liqsim-bench-backends-"))
    print(
        f"default scenario, seed {args.seed}, as an experiment run (no counterfactual, no "
        f"plots); load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    best: dict[str, dict] = {}
    for backend in ("pyevm", "anvil"):
        runs = [measure(backend, args.seed, tmp / f"{backend}-{i}") for i in range(args.repeat)]
        best[backend] = b = _best(runs)
        print(
            f"{backend:6s} wall {b['wall_s']:6.2f} s  run CPU {b['cpu_s']:6.2f} s (python "
            f"{b['python_cpu_s']:.2f} + anvil {b['anvil_cpu_s']:.2f})  imports "
            f"{b['import_s']:.2f} s  {b['blocks']} blocks, {b['transactions']} transactions"
        )
    py, an = best["pyevm"], best["anvil"]
    print(
        f"ratio pyevm / anvil: wall {py['wall_s'] / an['wall_s']:.2f}x, "
        f"CPU {py['cpu_s'] / an['cpu_s']:.2f}x"
    )
    for name, b in best.items():
        print(f"runs per hour per core, {name}: {3600 / b['cpu_s']:.0f}")
    projected = SWEEP_RUNS * an["cpu_s"] / args.cores / 60
    by_wall = SWEEP_RUNS * (an["wall_s"] - an["import_s"]) / args.cores / 60
    print(
        f"projected 1,000-seed default sweep: {projected:.1f} min "
        f"(anvil, {args.cores} cores, from CPU time; {by_wall:.1f} min from this run's wall "
        f"time less imports; pyevm: {SWEEP_RUNS * py['cpu_s'] / args.cores / 60:.1f} min)"
    )
    verdict = (
        f"met ({GOAL_MIN - projected:.1f} min to spare)"
        if projected <= GOAL_MIN
        else f"missed by {projected - GOAL_MIN:.1f} min ({projected / GOAL_MIN - 1:.0%})"
    )
    print(f"goal <= {GOAL_MIN:.0f} min: {verdict}")
    runs = {name: tmp / f"{name}-0" for name in best}
    summaries = {n: json.loads((p / "summary.json").read_text()) for n, p in runs.items()}
    problems = economic_differences(
        read_tables(runs["pyevm"]),
        read_tables(runs["anvil"]),
        summaries["pyevm"],
        summaries["anvil"],
    )
    print(
        "equivalence: "
        + (
            "identical economic tables and summary (hashes aside)"
            if not problems
            else "DIFFERENT: " + "; ".join(problems)
        )
    )
    if args.profile:
        path = str(tmp / "anvil.prof")
        measure("anvil", args.seed, tmp / "anvil-profiled", profile=path)
        _profile_summary(path)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
