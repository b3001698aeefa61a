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
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.experiments.metrics import METRICS, run_metrics
from sim.experiments.runs import Batch, RunOutcome, RunSpec, is_complete, run_all
from sim.output.runfolder import package_versions
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario


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
    if n < 1:
        raise ConfigError("--seeds", f"must be >= 1, got {n}")
    return list(range(start, start + n))


class ExperimentFolder:
    """Writes one experiment's outputs into ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError("--out", f"{self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "plots").mkdir(exist_ok=True)
        self.started = time.perf_counter()

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def inputs(self, command: str, scenario: Scenario, params: dict[str, Any]) -> None:
        (self.path / "scenario.toml").write_text(scenario.to_toml())
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
            },
        )

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
        self.inputs(command, scenario, params)
        batch = run_all(
            specs,
            runs,
            workers=options.workers,
            backend=options.backend,
            plots=options.run_plots,
            ray_address=options.ray_address,
            progress=Progress(unique_runs(specs), options.quiet),
        )
        return batch, results_table(specs, runs, self.path)

    def finish(self, batch: Batch, **extra: Any) -> None:
        data = json.loads((self.path / "experiment.json").read_text())
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
        df.to_csv(self.path / f"{name}.csv", index=False)
        df.to_parquet(self.path / f"{name}.parquet", index=False)
        return self.path / f"{name}.csv"

    def report(self, text: str) -> Path:
        path = self.path / "report.md"
        path.write_text(text)
        return path

    def _json(self, name: str, data: Any) -> None:
        (self.path / name).write_text(
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        )


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
