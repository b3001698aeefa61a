"""``liqsim viz``: the checks made before anything starts, and the local Solara server.

The server is solara's own ASGI app (``solara.server.starlette:app``, what ``solara run``
serves) under uvicorn, with :mod:`sim.viz.app` as its page; what the page shows is handed over
in environment variables. Solara's usage telemetry and version check are off (nothing leaves
the machine).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
import warnings
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from sim.scenario.loader import ConfigError

APP_MODULE = "sim.viz.app"
EXTRA_MODULES = ("solara", "uvicorn", "starlette", "altair", "networkx", "mesa.visualization")
INSTALL_HINT = "pip install -e '.[viz]'"


@dataclass(frozen=True)
class VizRequest:
    """What to serve, checked: a live scenario (and seed) or a run folder to replay."""

    host: str
    port: int
    scenario: Path | None = None
    seed: int = 1
    replay: Path | None = None
    open_browser: bool = True

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The variables the page (:mod:`sim.viz.app`) reads, and solara's settings."""
        from sim.viz.app_env import ENV_REPLAY, ENV_SCENARIO, ENV_SEED

        env = {
            "SOLARA_APP": APP_MODULE,
            "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
            "SOLARA_CHECK_HOOKS": "off",  # its hook checker flags Mesa's own SolaraViz code
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            ENV_SEED: str(self.seed),
        }
        if self.replay is not None:
            env[ENV_REPLAY] = str(self.replay.resolve())
        elif self.scenario is not None:
            env[ENV_SCENARIO] = str(self.scenario.resolve())
        return env


def missing_extra() -> list[str]:
    """The modules of the ``viz`` extra that are not installed (found without importing)."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def check_extra() -> None:
    missing = missing_extra()
    if missing:
        raise ConfigError(
            "viz",
            f"the dashboard needs the viz extra ({', '.join(missing)} not installed): "
            f"{INSTALL_HINT}",
        )


def check_listen(host: str, port: int) -> int:
    """The port to listen on (a free one for 0) if ``host:port`` can be bound now."""
    if not 0 <= port <= 65535:
        raise ConfigError("--port", f"must be between 0 and 65535 (0: a free port), got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError("--host", f"{host!r} is not an address of this machine ({exc})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(address)
        except OSError as exc:
            where = "--port" if exc.errno in (98, 48, 13, 10048) else "--host"
            raise ConfigError(where, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return sock.getsockname()[1]


def check_request(
    scenario: str | None,
    replay: str | None,
    host: str,
    port: int,
    seed: int = 1,
    open_browser: bool = True,
) -> VizRequest:
    """Every check of ``liqsim viz`` (a :class:`ConfigError` naming the cause), made before
    the server starts: the scenario and seed (or the run folder), the address, the extra."""
    if scenario is not None and replay is not None:
        raise ConfigError("--replay", "give a SCENARIO or --replay DIR, not both")
    if replay is not None:
        from sim.viz.replay import check_replay_folder

        folder: Path | None = check_replay_folder(replay)
        path = None
    else:
        from sim.viz.inputs import build_scenario

        build_scenario(scenario, seed, {})  # the file, its values and this seed's price path
        folder, path = None, Path(scenario) if scenario is not None else None
    bound = check_listen(host, port)
    check_extra()
    return VizRequest(host, bound, path, seed, folder, open_browser)


def serve(request: VizRequest, announce=print) -> None:
    """Serve the dashboard until interrupted (Ctrl-C); ``announce`` gets the URL line once
    the server accepts connections."""
    os.environ.update(request.environment())
    # solara warns on every page load when the host is not "localhost" (about cookies for
    # pages embedded in iframes, which this one is not)
    warnings.filterwarnings("ignore", message="Cookies with samesite=none require https")
    import uvicorn

    config = uvicorn.Config(
        "solara.server.starlette:app",
        host=request.host,
        port=request.port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)

    def when_started() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            announce(f"liqsim viz: {request.url}  (Ctrl-C stops it)")
            sys.stdout.flush()
            if request.open_browser:
                webbrowser.open(request.url)

    threading.Thread(target=when_started, daemon=True).start()
    server.run()
