"""Many runs: plan them, execute the missing ones in parallel, keep each in its own run folder.

A run is keyed by the fingerprint of its fully resolved scenario (sha256 of the resolved TOML,
:meth:`sim.scenario.schema.Scenario.fingerprint`) and its seed. Its folder is
``RUNS_DIR/<fingerprint[:16]>-seed<seed>``; a run whose folder says ``complete`` (status.json)
for the same fingerprint and seed (manifest.json) is skipped, so rerunning an experiment
executes only what is missing (a run left ``interrupted`` or ``incomplete``, or the
``.KEY.partial`` remains of a killed one, is redone: experiment runs replace such folders).

Interruptions: workers ignore SIGINT (Ctrl-C reaches the whole process group; the parent
decides); when the parent is interrupted it cancels the runs not started and sends SIGTERM to
its workers, each of which marks its run ``interrupted`` (keeping its tables) and exits; the
parent waits for them. A worker that dies (killed, out of memory) fails its run, not the batch.

Workers receive only plain data (the scenario as TOML text, the seed, a path) and build their own
chain, so they are spawn-safe and can run on another machine:

* ``local`` backend: in this process when one worker is asked for, otherwise a
  :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method; workers write
  their run folders directly.
* ``ray`` backend: one Ray task per run (``ray.init(num_cpus=workers)`` on a local instance, or
  an existing cluster by address). The task writes its run folder into a temporary directory on
  whatever node runs it and returns the files; this process writes them into the run folder, so
  no shared file system is needed.

Experiment run folders are plain ``liqsim run`` folders (without the counterfactual run); their
``traders.parquet`` (drawn exposure) and ``exogenous.parquet`` (the price path before agents'
impact: the common random numbers paired arms must share) feed the capital figure and the
pairing checks.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario, scenario_from_mapping

BACKENDS = ("local", "ray")
#: Most worker processes (or Ray CPUs) one experiment may ask for.
MAX_WORKERS = 256


@dataclass(frozen=True)
class RunSpec:
    """One run to execute: a resolved scenario, a seed, and labels for the results table."""

    scenario_toml: str
    seed: int
    fingerprint: str
    labels: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, scenario: Scenario, seed: int, **labels: Any) -> RunSpec:
        return cls(scenario.to_toml(), int(seed), scenario.fingerprint(), tuple(labels.items()))

    @property
    def key(self) -> str:
        return f"{self.fingerprint[:16]}-seed{self.seed}"

    @property
    def label_dict(self) -> dict[str, Any]:
        return dict(self.labels)


@dataclass
class RunOutcome:
    """What happened to one planned run."""

    spec: RunSpec
    folder: Path
    state: str  # "skipped" (already complete), "complete", "failed"
    seconds: float = 0.0
    error: str = ""


@dataclass
class Batch:
    """The outcome of :func:`run_all`."""

    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def executed(self) -> int:
        """Runs simulated by this call (complete or failed); skipped ones are not counted."""
        return sum(1 for o in self.outcomes if o.state != "skipped")

    @property
    def skipped(self) -> int:
        return sum(1 for o in self.outcomes if o.state == "skipped")

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def run_seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)


# ------------------------------------------------------------------ run folders


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, spec: RunSpec) -> bool:
    """True when ``folder`` holds a finished run of exactly this scenario and seed."""
    status = _read_json(folder / "status.json")
    manifest = _read_json(folder / "manifest.json")
    return (
        status is not None
        and status.get("state") == "complete"
        and manifest is not None
        and manifest.get("scenario_fingerprint") == spec.fingerprint
        and manifest.get("seed") == spec.seed
    )


def execute_run(
    scenario_toml: str,
    seed: int,
    folder: str | None,
    plots: bool = False,
    in_pool: bool = False,
) -> dict[str, Any]:
    """Simulate one run and write its run folder (worker entry point; plain arguments only).

    With ``folder=None`` the folder is written to a temporary directory and returned as
    ``result["files"]`` (relative path -> bytes), for workers without a shared file system.
    A failed run leaves ``status.json`` "incomplete" with the error and returns state "failed";
    an unfinished folder of an earlier run of the same key is replaced. Interrupted
    (SIGTERM), a run ends ``interrupted``; a pool worker (``in_pool``) then exits at once,
    anywhere else the interruption goes on up.
    """
    from sim.api import run_scenario

    scenario = scenario_from_mapping(tomllib.loads(scenario_toml))
    tmp = tempfile.mkdtemp(prefix="liqsim-run-") if folder is None else None
    path = Path(tmp) / "run" if tmp is not None else Path(folder)  # type: ignore[arg-type]
    started = time.perf_counter()
    try:
        run_scenario(scenario, seed=seed, out=path, counterfactual=False, plots=plots, force=True)
    except KeyboardInterrupt as exc:
        if in_pool:
            os._exit(128 + getattr(exc, "signum", signal.SIGINT))
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        result = {"state": "failed", "error": error, "seconds": time.perf_counter() - started}
    else:
        result = {"state": "complete", "error": "", "seconds": time.perf_counter() - started}
    if tmp is not None:
        result["files"] = {
            str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
        }
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _ignore_sigint() -> None:
    """Pool worker initializer: Ctrl-C reaches every process of the group; the parent alone
    decides, and stops its workers with SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to every worker still alive: each marks its run interrupted and exits."""
    processes = getattr(pool, "_processes", None) or {}
    for proc in list(processes.values()):
        with contextlib.suppress(Exception):
            proc.terminate()


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write a run folder returned by a remote worker (replacing any unfinished one)."""
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for rel, data in files.items():
        target = partial / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    shutil.rmtree(folder, ignore_errors=True)
    partial.replace(folder)


# ------------------------------------------------------------------ executing a batch


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("--workers", f"must be between 1 and {MAX_WORKERS}, got {workers}")
    return workers


def run_all(
    specs: Sequence[RunSpec],
    runs_dir: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    plots: bool = False,
    ray_address: str | None = None,
    progress: Callable[[RunOutcome], None] | None = None,
) -> Batch:
    """Execute every spec whose run folder is not complete; return what happened to each.

    Specs with the same key (same scenario and seed) are executed once."""
    check_workers(workers)
    if backend not in BACKENDS:
        raise ConfigError("--backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    batch = Batch()
    pending: dict[str, RunSpec] = {}
    for spec in specs:
        folder = runs_dir / spec.key
        if spec.key in pending or any(o.spec.key == spec.key for o in batch.outcomes):
            continue
        if is_complete(folder, spec):
            batch.outcomes.append(RunOutcome(spec, folder, "skipped"))
            if progress:
                progress(batch.outcomes[-1])
        else:
            pending[spec.key] = spec
    if not pending:
        return batch

    def done(spec: RunSpec, result: dict[str, Any]) -> None:
        folder = runs_dir / spec.key
        if "files" in result:
            _write_files(folder, result["files"])
        outcome = RunOutcome(
            spec, folder, result["state"], result.get("seconds", 0.0), result.get("error", "")
        )
        batch.outcomes.append(outcome)
        if progress:
            progress(outcome)

    todo = list(pending.values())
    if backend == "ray":
        _run_ray(todo, runs_dir, workers, plots, ray_address, done)
    elif workers == 1 or len(todo) == 1:
        for spec in todo:
            done(spec, execute_run(spec.scenario_toml, spec.seed, str(runs_dir / spec.key), plots))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_ignore_sigint
        ) as pool:
            futures = {
                pool.submit(
                    execute_run,
                    s.scenario_toml,
                    s.seed,
                    str((runs_dir / s.key).absolute()),
                    plots,
                    True,
                ): s
                for s in todo
            }
            try:
                for fut in as_completed(futures):
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        result = {
                            "state": "failed",
                            "error": "its worker process died (killed, or out of memory?)",
                            "seconds": 0.0,
                        }
                    done(futures[fut], result)
            except BaseException:
                for f in futures:
                    f.cancel()
                _stop_workers(pool)
                raise
    return batch


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _run_ray(
    todo: Iterable[RunSpec],
    runs_dir: Path,
    workers: int,
    plots: bool,
    address: str | None,
    done: Callable[[RunSpec, dict[str, Any]], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend",
            "ray is not installed; install the optional extra: pip install 'liqsim[ray]'",
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        refs = {task.remote(s.scenario_toml, s.seed, None, plots): s for s in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            spec = refs.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except (
                Exception
            ) as exc:  # a worker crashed (not a simulation error: those are returned)
                result = {
                    "state": "failed",
                    "error": f"{type(exc).__name__}: {exc}",
                    "seconds": 0.0,
                }
            done(spec, result)
    finally:
        if started_here:
            ray.shutdown()
