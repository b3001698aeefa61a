"""One anvil process: started on a free loopback port, readiness-checked, always stopped.

anvil is started with ``--port 0`` (the kernel picks a free port, so two workers never race
for one) and its log is written to a private temporary folder; the process is ready when it
prints ``Listening on 127.0.0.1:PORT``. It is stopped (SIGTERM, then SIGKILL) by
:meth:`AnvilProcess.stop`, when the object is garbage-collected, and at interpreter exit; on
Linux the kernel also kills it if the Python process dies without cleaning up (SIGKILL, out of
memory): ``PR_SET_PDEATHSIG`` is set in the child before anvil starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from sim.chain.anvil.binary import anvil_binary
from sim.chain.interface import ChainError

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
LOG_NAME = "anvil.log"
_LISTENING = re.compile(rb"Listening on ([0-9.]+):(\d+)")
_PR_SET_PDEATHSIG = 1


class AnvilStartError(ChainError):
    """anvil did not start (bad arguments, unreachable fork endpoint, no port)."""


class AnvilDied(ChainError):
    """The anvil process of a running chain exited (killed, crashed): the run cannot go on."""


def _prctl():  # resolved in the parent: the child only calls it (no import after fork)
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


_PRCTL = _prctl()


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the thread that started it goes away."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(popen: subprocess.Popen, workdir: Path) -> None:
    """Terminate, then kill, then reap ``popen``; remove its folder. Never raises."""
    try:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(STOP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        pass
    shutil.rmtree(workdir, ignore_errors=True)


class AnvilProcess:
    """A running anvil listening on loopback; ``url`` is its JSON-RPC endpoint.

    ``args`` are anvil's options (the port and host are added here); ``files`` are written to
    the process's working folder first, so options can name them relatively (``--init
    genesis.json``)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        files: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        binary = anvil_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="liqsim-anvil-"))
        for name, text in (files or {}).items():
            (self.workdir / name).write_text(text, encoding="utf-8")
        self.log_path = self.workdir / LOG_NAME
        command = [str(binary), "--host", "127.0.0.1", "--port", "0", *args]
        with open(self.log_path, "wb") as log:
            try:
                self._popen = subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"},
                    # the child only calls prctl, resolved before the fork (no allocation)
                    preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
                )
            except OSError as exc:
                shutil.rmtree(self.workdir, ignore_errors=True)
                raise AnvilStartError(f"could not start {binary}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _stop, self._popen, self.workdir)
        self.pid = self._popen.pid
        try:
            self.host, self.port = self._wait_listening(time.monotonic() + ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _wait_listening(self, deadline: float) -> tuple[str, int]:
        delay = 0.002
        while True:
            found = _LISTENING.search(self._read_log())
            if found:
                return found.group(1).decode(), int(found.group(2))
            if self._popen.poll() is not None:
                raise AnvilStartError(f"anvil exited before it was ready: {self.describe_exit()}")
            if time.monotonic() > deadline:
                raise AnvilStartError(
                    f"anvil (pid {self.pid}) was not listening after its start timeout; "
                    f"log: {self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _read_log(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except OSError:
            return b""

    def log_tail(self, lines: int = 12) -> str:
        """The last lines anvil printed (warnings and errors), on one line."""
        text = self._read_log().decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(line.strip() for line in text[-lines:] if line.strip())
        return tail or "(empty)"

    def alive(self) -> bool:
        return self._popen.poll() is None

    def exited_within(self, timeout_s: float) -> bool:
        """True when the process has ended or ends within ``timeout_s`` (it is reaped)."""
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def describe_exit(self) -> str:
        """How the process ended ("status 1", "killed by SIGKILL") and its last log lines."""
        code = self._popen.poll()
        if code is None:
            how = "still running"
        elif code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit status {code}"
        return f"anvil (pid {self.pid}) {how}; its last output: {self.log_tail()}"

    def stop(self) -> None:
        """Stop the process and remove its folder (idempotent)."""
        self._finalizer()
