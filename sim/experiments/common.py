"""What every experiment shares: its output folder, the results table built from run folders,
Markdown tables, seeds and progress output.

How an experiment executes its runs (workers, backend, shared runs folder, ...) is one
:class:`RunOptions`, passed unchanged from the command line (or a caller) to
:meth:`ExperimentFolder.execute`.

An experiment folder::

    experiment.json    command, parameters, seeds, base-scenario fingerprint, runs executed/skipped,
                       package versions, wall-clock time
    scenario.toml      the resolved base scenario (every parameter; overrides applied)
    results.csv        one row per run: design labels, seed, run key and folder, key metrics
    results.parquet    the same
    summary.csv        the experiment's summary table (also .parquet)
    plots/*.png        the experiment's plots
    report.md          a short report (tables, plots, definitions, how to reproduce)
    runs/<key>/        one liqsim run folder per run (key = scenario fingerprint + seed)

Rerunning a command into its own folder resumes it (only missing runs execute). So that the
folder never mixes two invocations, each invocation first deletes the derived files (results,
summary, plots, report: they are rebuilt from the run folders), and ``experiment.json`` says
``running`` (with the pid, host and a heartbeat) until it ends ``complete``, ``incomplete``
(failed runs or an error: ``runs_failed``, ``error``) or ``interrupted`` (SIGINT, SIGTERM).
A folder of another command, or one a live process is writing, is refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.experiments.metrics import METRICS, run_metrics
from sim.experiments.runs import Batch, RunOutcome, RunSpec, is_complete, run_all
from sim.output.runfolder import (
    OutputWriteError,
    check_writable_parent,
    interrupt_signal,
    out_error,
    package_versions,
    process_alive,
    process_identity,
    read_json,
    write_json,
)
from sim.scenario.loader import ConfigError
from sim.scenario.schema import MAX_SEED, Scenario

#: Most seeds of one experiment, and most runs it may plan.
MAX_SEEDS = 10_000
MAX_RUNS = 10_000
#: Files an invocation rebuilds from the run folders (deleted when it starts).
DERIVED = ("results.csv", "results.parquet", "summary.csv", "summary.parquet", "report.md")


@dataclass(frozen=True)
class RunOptions:
    """How an experiment executes its runs; the same for compare, amplify and sweep.

    ``workers``: parallel worker processes (or Ray CPUs); ``backend``: "local" or "ray";
    ``runs_dir``: where run folders live (None: ``OUT/runs``); ``run_plots``: also draw each
    run's own plots; ``ray_address``: a running Ray cluster (None: start a local instance);
    ``quiet``: no per-run progress lines. Validated where the runs execute
    (:func:`sim.experiments.runs.run_all`)."""

    workers: int = 1
    backend: str = "local"
    runs_dir: str | Path | None = None
    run_plots: bool = False
    ray_address: str | None = None
    quiet: bool = False


DEFAULT_RUN_OPTIONS = RunOptions()  # one worker, in this process


def seed_list(n: int, start: int = 1) -> list[int]:
    if not 1 <= n <= MAX_SEEDS:
        raise ConfigError("--seeds", f"must be between 1 and {MAX_SEEDS:_}, got {n}")
    if start < 0:
        raise ConfigError("--seed-start", f"must be >= 0, got {start}")
    if start + n - 1 > MAX_SEED:
        last = start + n - 1
        raise ConfigError("--seed-start", f"the last seed must be <= 2**63 - 1, got {last}")
    return list(range(start, start + n))


def check_experiment_out(out: str | Path, command: str, *, force: bool = False) -> None:
    """Every check of an experiment's ``--out`` that needs no writing (before any set-up).

    The folder may exist when it is this command's own (the invocation resumes it); a folder of
    another command, or one that is not liqsim's, needs ``force`` (and only liqsim's or empty
    folders are ever replaced); a folder another live process is writing is always refused."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise out_error(f"{str(out)!r} cannot be an experiment folder: name a folder")
    check_writable_parent(out)
    if not out.exists():
        return
    data = read_json(out / "experiment.json")
    if data is not None and data.get("state") == "running" and process_alive(data) is not False:
        raise out_error(
            f"another liqsim process (pid {data.get('pid')} on {data.get('host')}) is running "
            f"an experiment in {out}"
        )
    if force:
        if data is None and not _empty_or_liqsim(out):
            raise out_error(
                f"{out} exists and is not a liqsim folder; refusing to replace it, even with "
                "--force"
            )
        return
    if data is not None and data.get("command") not in (None, command):
        raise out_error(
            f"{out} holds a '{data.get('command')}' experiment, not '{command}'; choose another "
            "--out, or pass --force to replace it"
        )
    if data is None and not _empty(out):
        raise out_error(
            f"{out} exists and is not a liqsim experiment folder; choose another --out (or "
            "--force to replace a liqsim folder)"
        )


def _empty(path: Path) -> bool:
    try:
        return not any(path.iterdir())
    except OSError:
        return False


def _empty_or_liqsim(path: Path) -> bool:
    return _empty(path) or any((path / m).is_file() for m in ("status.json", "experiment.json"))


def replace_experiment_out(out: str | Path) -> None:
    """``--force``: delete the experiment folder ``out`` (checked by
    :func:`check_experiment_out`), runs included."""
    out = Path(out)
    if out.exists():
        aside = out.with_name(f".{out.name}.old-{os.getpid()}")
        try:
            os.replace(out, aside)
        except OSError as err:
            raise out_error(f"cannot replace {out}: {err.strerror or err}") from None
        shutil.rmtree(aside, ignore_errors=True)


def mark_ended(path: str | Path, state: str, **extra: Any) -> None:
    """Give ``experiment.json`` a final ``state`` if this process left it ``running`` (best
    effort: a full or read-only disk leaves it running, reported stale once this process
    ends)."""
    target = Path(path) / "experiment.json"
    data = read_json(target)
    if data is None or data.get("state") != "running" or data.get("pid") != os.getpid():
        return
    for key in ("pid", "host", "pid_start", "heartbeat_at"):
        data.pop(key, None)
    data.update(state=state, **extra)
    with contextlib.suppress(OutputWriteError):
        write_json(target, data)


def ended_state(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """The final state and fields of an experiment stopped by ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", {"signal": signal.Signals(interrupt_signal(exc)).name}
    cause = (
        "output"
        if isinstance(exc, OutputWriteError | OSError)
        else "input"
        if isinstance(exc, ConfigError)
        else "error"
    )
    return "incomplete", {"cause": cause, "error": f"{type(exc).__name__}: {exc}"}


class ExperimentFolder:
    """Writes one experiment's outputs into ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError("--out", f"{self.path} exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "plots").mkdir(exist_ok=True)
        except OSError as err:
            raise out_error(f"cannot create {self.path}: {err.strerror or err}") from None
        self.started = time.perf_counter()

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def claim(self, command: str) -> None:
        """Refuse a folder another live process writes or another command's; then delete the
        derived files of an earlier invocation (rebuilt from the run folders at the end)."""
        data = read_json(self.path / "experiment.json")
        if data is not None:
            if data.get("state") == "running" and process_alive(data) is not False:
                raise out_error(
                    f"another liqsim process (pid {data.get('pid')} on {data.get('host')}) is "
                    f"running an experiment in {self.path}"
                )
            if data.get("command") not in (None, command):
                raise out_error(
                    f"{self.path} holds a '{data.get('command')}' experiment, not '{command}'"
                )
        for name in DERIVED:
            (self.path / name).unlink(missing_ok=True)
        for png in self.plots.glob("*.png"):
            png.unlink(missing_ok=True)

    def inputs(self, command: str, scenario: Scenario, params: dict[str, Any]) -> None:
        self._text("scenario.toml", scenario.to_toml())
        self._json(
            "experiment.json",
            {
                "command": command,
                "argv": " ".join(shlex.quote(a) for a in sys.argv),
                "scenario": scenario.name,
                "scenario_fingerprint": scenario.fingerprint(),
                "parameters": params,
                "packages": package_versions(),
                "state": "running",
                "started_at": _now(),
                "heartbeat_at": _now(),
                **process_identity(),
            },
        )

    def heartbeat(self) -> None:
        data = read_json(self.path / "experiment.json")
        if data is not None and data.get("state") == "running":
            data["heartbeat_at"] = _now()
            self._json("experiment.json", data)

    def execute(
        self,
        command: str,
        scenario: Scenario,
        specs: Sequence[RunSpec],
        design: dict[str, Any],
        options: RunOptions,
    ) -> tuple[Batch, pd.DataFrame]:
        """Record the inputs, run what is missing of ``specs`` as ``options`` say, and return
        the batch and the tidy results table (one row per run). Shared by every experiment
        command."""
        runs = Path(options.runs_dir) if options.runs_dir else self.path / "runs"
        params = {
            **design,
            "workers": options.workers,
            "backend": options.backend,
            "runs_dir": str(runs),
        }
        self.claim(command)
        self.inputs(command, scenario, params)
        progress = Progress(unique_runs(specs), options.quiet)

        def on_outcome(outcome: RunOutcome) -> None:
            progress(outcome)
            self.heartbeat()

        try:
            batch = run_all(
                specs,
                runs,
                workers=options.workers,
                backend=options.backend,
                plots=options.run_plots,
                ray_address=options.ray_address,
                progress=on_outcome,
            )
        except BaseException as exc:
            state, extra = ended_state(exc)
            mark_ended(self.path, state, **extra)
            raise
        return batch, results_table(specs, runs, self.path)

    def finish(self, batch: Batch, **extra: Any) -> None:
        data = read_json(self.path / "experiment.json") or {}
        for key in ("pid", "host", "pid_start", "heartbeat_at"):
            data.pop(key, None)
        data.update(
            state="complete" if not batch.failed else "incomplete",
            runs_planned=len(batch.outcomes),
            runs_executed=batch.executed,
            runs_skipped=batch.skipped,
            runs_failed=[{"key": o.spec.key, "error": o.error} for o in batch.failed],
            wall_clock_s=round(time.perf_counter() - self.started, 3),
            **extra,
        )
        self._json("experiment.json", data)

    def table(self, name: str, df: pd.DataFrame) -> Path:
        csv, parquet = self.path / f"{name}.csv", self.path / f"{name}.parquet"
        _atomic_write(csv, lambda tmp: df.to_csv(tmp, index=False))
        _atomic_write(parquet, lambda tmp: df.to_parquet(tmp, index=False))
        return csv

    def report(self, text: str) -> Path:
        self._text("report.md", text)
        return self.path / "report.md"

    def _text(self, name: str, text: str) -> None:
        _atomic_write(self.path / name, lambda tmp: tmp.write_text(text))

    def _json(self, name: str, data: Any) -> None:
        write_json(self.path / name, data)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary sibling and a rename (:class:`OutputWriteError` on failure)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputWriteError(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def results_table(specs: Sequence[RunSpec], runs_dir: Path, relative_to: Path) -> pd.DataFrame:
    """One row per planned run: its labels, seed, key, folder, state and key metrics (NaN for a
    run that did not complete). Metrics are read back from the run folders."""
    rows = []
    seen = set()
    for spec in specs:
        if (spec.labels, spec.key) in seen:
            continue
        seen.add((spec.labels, spec.key))
        folder = runs_dir / spec.key
        complete = is_complete(folder, spec)
        try:
            rel = str(folder.resolve().relative_to(relative_to.resolve()))
        except ValueError:
            rel = str(folder.resolve())
        row: dict[str, Any] = {
            **spec.label_dict,
            "seed": spec.seed,
            "run_key": spec.key,
            "run_folder": rel,
            "state": "complete" if complete else "failed",
        }
        row.update(run_metrics(folder) if complete else dict.fromkeys(METRICS, math.nan))
        rows.append(row)
    return pd.DataFrame(rows)


class Progress:
    """Prints one line per finished run (to stderr) unless quiet."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.quiet, self.count = total, quiet, 0

    def __call__(self, outcome: RunOutcome) -> None:
        self.count += 1
        if self.quiet:
            return
        labels = " ".join(f"{k}={v}" for k, v in outcome.spec.labels)
        what = {
            "skipped": "done before, skipped",
            "complete": f"{outcome.seconds:.1f} s",
            "failed": f"FAILED: {outcome.error}",
        }
        print(
            f"[{self.count}/{self.total}] {labels} seed={outcome.spec.seed}: {what[outcome.state]}",
            file=sys.stderr,
            flush=True,
        )


def unique_runs(specs: Iterable[RunSpec]) -> int:
    return len({s.key for s in specs})


def fmt_value(metric: str, v: float) -> str:
    """``v`` in the format of ``metric`` (4 significant digits for an unknown name)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return METRICS[metric].fmt.format(v) if metric in METRICS else f"{v:,.4g}"


def reproduce_block(argv: str) -> str:
    return f"Reproduce (runs already in `runs/` are skipped):\n\n```sh\n{argv}\n```\n"
