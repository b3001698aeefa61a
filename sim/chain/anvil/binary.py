"""Where the anvil executable is: the npm package ``@foundry-rs/anvil`` under ``node_modules``.

The package ships its binary in a platform package (``@foundry-rs/anvil-linux-amd64`` and
siblings, npm optional dependencies); ``npm ci`` installs the one for this machine from the
lock file, and nothing is downloaded at run time. ``LIQSIM_ANVIL`` names another executable
(a Foundry installation, say).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from sim.chain.interface import ChainError

ANVIL_ENV = "LIQSIM_ANVIL"
REPO_ROOT = Path(__file__).resolve().parents[3]
_PACKAGES = {
    ("linux", "x86_64"): "anvil-linux-amd64",
    ("linux", "amd64"): "anvil-linux-amd64",
    ("linux", "aarch64"): "anvil-linux-arm64",
    ("linux", "arm64"): "anvil-linux-arm64",
    ("darwin", "x86_64"): "anvil-darwin-amd64",
    ("darwin", "arm64"): "anvil-darwin-arm64",
}


class AnvilNotFound(ChainError):
    """The anvil executable is not installed (or not executable)."""


def _candidates(roots: list[Path]) -> list[Path]:
    system, machine = platform.system().lower(), platform.machine().lower()
    package = _PACKAGES.get((system, machine))
    found = []
    for root in roots:
        scope = root / "node_modules" / "@foundry-rs"
        if package is not None:
            found.append(scope / package / "bin" / "anvil")
        found.append(scope / "anvil" / "anvil")  # the package's own download fallback
    return found


def anvil_binary() -> Path:
    """The anvil executable; :class:`AnvilNotFound` names where it looked and the fix."""
    override = os.environ.get(ANVIL_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotFound(f"{ANVIL_ENV}={override} is not an executable file")
    roots = list(dict.fromkeys([REPO_ROOT, Path.cwd()]))
    candidates = _candidates(roots)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise AnvilNotFound(
        "the anvil backend needs the npm package @foundry-rs/anvil: run `npm ci` in the "
        f"repository (`make test` runs it), or set {ANVIL_ENV} to an anvil executable "
        f"(looked in {looked})"
    )
