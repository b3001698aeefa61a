"""One run folder: resolved scenario, manifest, tables (Parquet), summary, plots, status.

Layout::

    scenario.toml        the resolved scenario (every parameter, defaults filled in)
    manifest.json        seed, package versions, compiler, contract code hashes, backend
    blocks.parquet       per-block series          (pd.read_parquet(folder / "blocks.parquet"))
    transactions.parquet every mined transaction   dropped.parquet: every dropped one
    liquidations.parquet every liquidation         accounts.parquet: every subaccount at the end
    summary.json         key figures (sim.output.summary)
    plots/*.png          prices, liquidations, fees, insurance
    status.json          {"state": "complete" | "incomplete" | "interrupted", ...}
    timing.json          wall-clock times (the only file that differs between identical runs)

**A run folder never lies.** A run is written into a hidden sibling, ``.NAME.partial``, whose
``status.json`` says ``running`` with the writer's pid, host and a heartbeat time; the sibling
is renamed to ``NAME`` only once its status is final:

* ``complete``: every file written;
* ``interrupted``: stopped by SIGINT or SIGTERM (``signal``); the tables hold the blocks
  simulated (``blocks_completed``), with no summary;
* ``incomplete``: failed (``cause``: ``simulation``, ``output`` or ``input``; ``error`` says
  why); the tables hold the last blocks that could be saved (``tables_blocks``).

A process killed outright (``kill -9``) leaves the ``.NAME.partial`` sibling with status
``running`` and a pid that no longer runs: :func:`folder_state` reports it as ``stale``. An
existing ``NAME`` (or a ``.NAME.partial`` left by a killed run) is refused unless ``force``,
which replaces it once the new run has a final status; a sibling another live process is
writing is always refused. Tables are checkpointed (all tables of one checkpoint, or none)
every 100 blocks, and every file is written to a temporary name and renamed, so no file is
ever half-written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.scenario.loader import ConfigError

if TYPE_CHECKING:  # imported lazily: the command line checks --out before heavy imports
    import pandas as pd

    from sim.scenario.schema import Scenario

PACKAGES = (
    "liqsim",
    "mesa",
    "web3",
    "eth-tester",
    "py-evm",
    "numpy",
    "pandas",
    "pyarrow",
    "matplotlib",
)

#: Final states of a run folder (``running`` exists only in the ``.NAME.partial`` sibling).
FINAL_STATES = ("complete", "incomplete", "interrupted")
#: Seconds between two heartbeats of a running run (written between blocks).
HEARTBEAT_S = 5.0
#: Files that mark a folder as liqsim's (only such folders, or empty ones, are ever replaced).
MARKERS = ("status.json", "manifest.json", "experiment.json", "stress.csv")


# ------------------------------------------------------------------ signals


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the run can stop cleanly (a ``KeyboardInterrupt``, so
    code that handles Ctrl-C handles it)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def interrupt_signal(exc: BaseException) -> int:
    """The signal number behind an interruption (SIGINT for a plain ``KeyboardInterrupt``)."""
    return getattr(exc, "signum", signal.SIGINT)


class _SignalState:
    def __init__(self) -> None:
        self.depth = 0  # nested interrupts_as_exceptions
        self.defer = 0  # > 0: raise only at raise_pending() (between blocks)
        self.shield = 0  # > 0: never raise (a folder is being finalized)
        self.pending: int | None = None


_signals = _SignalState()


def _on_signal(signum: int, _frame: Any) -> None:
    st = _signals
    if st.shield:
        st.pending = st.pending or signum
        return
    if st.defer and st.pending is None:
        st.pending = signum  # stop at the next block boundary; a second signal stops at once
        return
    st.pending = None
    raise RunInterrupted(signum)


@contextlib.contextmanager
def interrupts_as_exceptions(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Turn ``signals`` into :class:`RunInterrupted` while the block runs (main thread only;
    elsewhere a no-op). Nested uses restore the handlers they found."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, _on_signal)
    _signals.depth += 1
    try:
        yield
    finally:
        _signals.depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)
        if _signals.depth == 0:
            _signals.pending = None


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Inside, a first signal is only recorded; :func:`raise_pending` raises it (call it where
    the state is consistent, e.g. between two blocks). A second signal raises at once."""
    _signals.defer += 1
    try:
        yield
    finally:
        _signals.defer -= 1


def raise_pending() -> None:
    """Raise the interruption recorded under :func:`deferred_interrupts`, if any."""
    if _signals.pending is not None and not _signals.shield:
        signum, _signals.pending = _signals.pending, None
        raise RunInterrupted(signum)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Signals are recorded but never raised inside (while a folder's final state is written);
    what arrived is dropped on exit: the caller is already stopping."""
    _signals.shield += 1
    try:
        yield
    finally:
        _signals.shield -= 1
        if _signals.shield == 0:
            _signals.pending = None


# ------------------------------------------------------------------ errors


class OutputWriteError(Exception):
    """A file of an output folder could not be written (disk full, read-only, ...)."""

    def __init__(self, path: Path, err: OSError):
        self.path = Path(path)
        self.errno = err.errno
        reason = err.strerror or str(err)
        if err.errno == errno.ENOSPC:
            reason += " (the disk is full)"
        elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason += " (the folder is not writable)"
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")


def out_error(reason: str, what: str = "--out") -> ConfigError:
    """A user error about the output folder (exit status 2 on the command line)."""
    return ConfigError(what, reason)


# ------------------------------------------------------------------ small helpers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary sibling and a rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _unlink(tmp)
        raise OutputWriteError(path, err) from err
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:class:`OutputWriteError` on failure)."""
    text = _json_text(data)
    _atomic(Path(path), lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None if missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------ which process writes


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of ``pid`` from /proc (Linux), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_identity() -> dict[str, Any]:
    """This process, as a running status records it: pid, host, and (Linux) its start time, so
    a reused pid is not taken for the writer."""
    stat = _proc_stat(os.getpid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pid_start": stat[1] if stat else None,
    }


def process_alive(status: dict[str, Any]) -> bool | None:
    """Whether the process a running status names still runs: True, False, or None when it ran
    on another host (it cannot be checked from here). This process counts as not running (its
    own earlier, unfinished folder)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if host != socket.gethostname():
        return None
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):  # a zombie: dead, not yet reaped
            return False
        started = status.get("pid_start")
        if started is not None and started != stat[1]:
            return False  # the pid was reused by another process
    return True


# ------------------------------------------------------------------ the output folder


def partial_path(out: str | Path) -> Path:
    """The hidden sibling a run is written into before it gets its final name."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def _is_liqsim_folder(path: Path) -> bool:
    try:
        return any((path / m).is_file() for m in MARKERS) or not any(path.iterdir())
    except OSError:
        return False


def check_writable_parent(out: Path, what: str = "--out") -> None:
    """``out`` can be created: no part of its path is a file, the nearest existing folder is
    writable. A :class:`ConfigError` naming ``what`` otherwise."""
    try:
        problem = _creation_problem(Path(out))
    except OSError as err:
        problem = f"cannot use {out}: {err.strerror or err}"
    except ValueError as err:  # e.g. a NUL character in the path
        problem = f"cannot use {str(out)!r}: {err}"
    if problem:
        raise out_error(problem, what)


def _creation_problem(out: Path) -> str:
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a folder"
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        return f"cannot create {out}: {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {out}: {ancestor} is not writable"
    return ""


def check_out(out: str | Path, *, force: bool = False, what: str = "--out") -> None:
    """Every check of an output folder that needs no writing, made before any set-up:

    * ``out`` is not a file and not under a file, and its nearest existing folder is writable;
    * ``out`` does not exist, unless ``force`` (and then it must be liqsim's or empty: nothing
      else is ever deleted);
    * no ``.NAME.partial`` sibling is being written by a live process; one left by a killed run
      needs ``force``.
    """
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise out_error(f"{str(out)!r} cannot be a run folder: name a new folder", what)
    check_writable_parent(out, what)
    partial = partial_path(out)
    if partial.exists():
        status = read_json(partial / "status.json") or {}
        alive = process_alive(status)
        if alive or alive is None:
            who = f"pid {status.get('pid')} on {status.get('host')}"
            raise out_error(f"another liqsim run ({who}) is writing {out} (in {partial})", what)
        if not force:
            beat = status.get("heartbeat_at", "unknown")
            raise out_error(
                f"{partial} holds the remains of a run that was killed (pid "
                f"{status.get('pid')} is gone, last heartbeat {beat}); look at it, or pass "
                "--force to replace it",
                what,
            )
    if out.exists():
        if not force:
            raise out_error(
                f"{out} already exists; pass --force to replace it (force=True from Python), or "
                "choose another --out",
                what,
            )
        if not _is_liqsim_folder(out):
            raise out_error(
                f"{out} exists and is not a liqsim folder; refusing to replace it, even with "
                "--force",
                what,
            )


def _remove(path: Path) -> None:
    """Delete a folder (or file), first moving it aside so a half-deleted tree never keeps the
    name."""
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)


class RunFolder:
    """Writes one run's outputs: into ``.NAME.partial`` (``work``) while it runs, published to
    ``NAME`` (``path``) by :meth:`finish`.

    Creating one claims the folder at once (the checks of :func:`check_out`, then the
    ``.NAME.partial`` sibling with a ``running`` status), so an unusable ``--out`` fails
    before any set-up."""

    def __init__(self, path: str | Path, *, force: bool = False):
        self.path = Path(path)
        self.work = partial_path(self.path)
        self.force = force
        self.seed: int | None = None
        self.tables_blocks: int | None = None  # blocks in the tables on disk
        self.published = False
        self._identity = process_identity()
        self._started_at = _now()
        self._last_beat = 0.0
        self._blocks = 0
        check_out(self.path, force=force)
        if self.work.exists():
            _remove(self.work)  # a killed run's remains (check_out needs force for it)
        try:
            self.work.parent.mkdir(parents=True, exist_ok=True)
            self.work.mkdir()
        except FileExistsError:
            raise out_error(f"another process is creating {self.path} right now") from None
        except OSError as err:
            raise out_error(f"cannot create {self.path}: {err.strerror or err}") from None
        try:
            self._running()
        except OutputWriteError as err:
            shutil.rmtree(self.work, ignore_errors=True)
            raise out_error(f"cannot write in {self.path.parent}: {err.reason}") from None

    # -- status ------------------------------------------------------------------------------

    def _running(self) -> None:
        write_json(
            self.work / "status.json",
            {
                "state": "running",
                "seed": self.seed,
                "blocks_completed": self._blocks,
                "started_at": self._started_at,
                "heartbeat_at": _now(),
                **self._identity,
            },
        )
        self._last_beat = time.monotonic()

    def heartbeat(self, blocks_completed: int, *, every_s: float = HEARTBEAT_S) -> None:
        """Refresh the running status (at most every ``every_s`` seconds; 0: now)."""
        self._blocks = blocks_completed
        if time.monotonic() - self._last_beat >= every_s:
            self._running()

    def status(self, state: str, **extra: Any) -> None:
        write_json(self.work / "status.json", {"state": state, **extra})

    def start(self, scenario: Scenario, seed: int) -> None:
        self.seed = seed
        self.write_text("scenario.toml", scenario.to_toml())
        self._running()

    # -- files -------------------------------------------------------------------------------

    def write_text(self, name: str, text: str) -> None:
        _atomic(self.work / name, lambda tmp: tmp.write_text(text))

    def manifest(self, model) -> None:
        from eth_utils import keccak

        from sim.chain.artifacts import load_artifact, load_manifest

        system = model.system
        code = {}
        for name, contract in (
            [("CollateralToken", system.token), ("MarginExchange", system.exchange)]
            + [
                (f"OracleFeed[{n}]", f)
                for n, f in zip(system.market_names, system.feeds, strict=True)
            ]
            + [
                (f"VirtualAmm[{n}]", v)
                for n, v in zip(system.market_names, system.venues, strict=True)
            ]
        ):
            code[name] = {
                "address": contract.address,
                "runtime_code_keccak": "0x"
                + keccak(bytes(model.session.w3.eth.get_code(contract.address))).hex(),
            }
        artifacts = {
            n: "0x" + keccak(load_artifact(n).bytecode).hex() for n in load_manifest()["contracts"]
        }
        write_json(
            self.work / "manifest.json",
            {
                "seed": model.seed,
                "scenario": model.scenario.name,
                "scenario_fingerprint": model.scenario.fingerprint(),
                "backend": model.session.backend.name,
                "python": platform.python_version(),
                "packages": package_versions(),
                "compiler": load_manifest()["compiler"],
                "contract_sources_hash": load_manifest()["sourcesHash"],
                "artifact_creation_code_keccak": artifacts,
                "deployed": code,
                "chain_id": model.session.genesis.chain_id,
                "genesis_timestamp": model.session.genesis.timestamp,
            },
        )

    def tables(self, tables: dict[str, pd.DataFrame], blocks: int | None = None) -> None:
        """Write every table, all or none: each goes to a temporary file first, and only when
        all are written are they renamed into place (a failure leaves the previous set)."""
        written: list[tuple[Path, Path]] = []
        try:
            for name, df in tables.items():
                target = self.work / f"{name}.parquet"
                tmp = self.work / f".{name}.parquet.tmp"
                try:
                    df.to_parquet(tmp, index=False)
                except OSError as err:
                    raise OutputWriteError(target, err) from err
                written.append((tmp, target))
            for tmp, target in written:
                try:
                    os.replace(tmp, target)
                except OSError as err:
                    raise OutputWriteError(target, err) from err
        finally:
            for tmp, _ in written:
                _unlink(tmp)
            for name in tables:
                _unlink(self.work / f".{name}.parquet.tmp")
        if blocks is not None:
            self.tables_blocks = blocks

    def summary(self, summary: dict[str, Any]) -> None:
        write_json(self.work / "summary.json", summary)

    def timing(self, timing: dict[str, Any]) -> None:
        write_json(self.work / "timing.json", timing)

    def plots(self, draw: Callable[[Path], None]) -> None:
        """Run ``draw(plots_folder)``; a write failure becomes :class:`OutputWriteError`."""
        folder = self.work / "plots"
        try:
            draw(folder)
        except OSError as err:
            raise OutputWriteError(Path(err.filename or folder), err) from err

    # -- the end -----------------------------------------------------------------------------

    def finish(self, state: str, **extra: Any) -> Path:
        """Write the final status and give the folder its name (replacing the old folder when
        ``force``). Returns the final path. If the status cannot be written the folder stays
        ``.NAME.partial`` (reported as stale once this process is gone) and
        :class:`OutputWriteError` is raised."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state!r}")
        self.status(state, **extra)
        self.publish()
        return self.path

    def publish(self) -> None:
        if self.published:
            return
        if self.path.exists():
            if not (self.force and _is_liqsim_folder(self.path)):
                raise OutputWriteError(
                    self.path, FileExistsError(errno.EEXIST, "another process created it")
                )
            _remove(self.path)
        try:
            os.replace(self.work, self.path)
        except OSError as err:
            raise OutputWriteError(self.path, err) from err
        self.work = self.path
        self.published = True

    def abandon(self) -> None:
        """Remove the unfinished folder (nothing ran: e.g. a user error found at set-up)."""
        if not self.published:
            shutil.rmtree(self.work, ignore_errors=True)


def read_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    """Load a run folder's tables."""
    import pandas as pd

    path = Path(path)
    return {p.stem: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}


# ------------------------------------------------------------------ reading a folder's state


@dataclass
class FolderState:
    """What a run or experiment folder holds, as :func:`folder_state` reads it.

    ``state``: ``complete``, ``incomplete``, ``interrupted`` (final), ``running`` (a live
    process writes it), ``stale`` (its writer is gone: killed), ``unknown`` (running on another
    host), ``missing`` (no liqsim folder there)."""

    path: Path
    state: str
    where: Path | None = None  # the folder holding the status read
    status: dict[str, Any] = field(default_factory=dict)
    kind: str = "run"  # "run" or "experiment"
    note: str = ""

    def describe(self) -> str:
        text = self._describe()
        return f"{text} ({self.note})" if self.note else text

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def _describe(self) -> str:
        s = self.status
        if self.state == "missing":
            return f"{self.path}: no liqsim run or experiment folder here"
        if self.kind == "experiment":
            what = f"experiment '{s.get('command', '?')}'"
        else:
            what = f"run (seed {s.get('seed')})"
        if self.state == "complete":
            extra = f", {s['blocks_completed']} blocks" if "blocks_completed" in s else ""
            return f"{self.path}: complete {what}{extra}"
        if self.state == "interrupted":
            return (
                f"{self.path}: interrupted {what} ({s.get('signal', 'signal')}"
                + (
                    f", after {s['blocks_completed']} blocks"
                    if s.get("blocks_completed") is not None
                    else ""
                )
                + ")"
            )
        if self.state == "incomplete":
            cause = f" [{s['cause']}]" if s.get("cause") else ""
            error = s.get("error") or ", ".join(
                f"{f.get('key')}: {f.get('error')}" for f in s.get("runs_failed", [])
            )
            return f"{self.path}: incomplete {what}{cause}: {error}"
        where = f" in {self.where}" if self.where != self.path else ""
        beat = s.get("heartbeat_at", "unknown")
        if self.state == "running":
            return f"{self.path}: {what} running{where} (pid {s.get('pid')}, last heartbeat {beat})"
        if self.state == "unknown":
            return (
                f"{self.path}: {what} running{where} on host {s.get('host')} (cannot check its "
                f"pid {s.get('pid')} from here; last heartbeat {beat})"
            )
        return (
            f"{self.path}: stale {what}{where}: its process (pid {s.get('pid')}) is gone without "
            f"finishing (killed?); last heartbeat {beat}, "
            f"{s.get('blocks_completed', '?')} blocks done"
        )


def _live_state(status: dict[str, Any]) -> str:
    alive = process_alive(status)
    return "running" if alive else ("unknown" if alive is None else "stale")


def folder_state(path: str | Path) -> FolderState:
    """The state of the run or experiment folder ``path``: its final status, or for a run
    still (or no longer) being written, whether its writer lives (``running``) or is gone
    (``stale``: killed). A run folder being replaced (``--force``) reports its new run."""
    path = Path(path)
    partial = partial_path(path)
    running = read_json(partial / "status.json") if partial.is_dir() else None
    note = ""
    if running is not None and running.get("state") == "running":
        state = _live_state(running)
        if state != "stale" or not (path / "status.json").is_file():
            return FolderState(path, state, partial, running)
        note = f"a later run into it was killed; its remains are in {partial}"
    experiment = read_json(path / "experiment.json")
    if experiment is not None:
        state = str(experiment.get("state", "unknown"))
        if state == "running":
            state = _live_state(experiment)
        return FolderState(path, state, path, experiment, kind="experiment")
    status = read_json(path / "status.json")
    if status is not None:
        state = str(status.get("state", "unknown"))
        if state == "running":  # a folder written before runs had a .partial sibling
            state = _live_state(status)
        return FolderState(path, state, path, status, note=note)
    if running is not None:
        return FolderState(path, "stale", partial, running)
    return FolderState(path, "missing")
