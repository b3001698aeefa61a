"""Shared by the anvil tests: skip only when the anvil binary is not installed.

CI runs ``make test``, which runs ``npm ci`` and so installs ``@foundry-rs/anvil``: there these
tests always run.
"""

from __future__ import annotations

import pytest

from sim.chain.anvil.binary import AnvilNotFound, anvil_binary


def _missing_reason() -> str:
    try:
        anvil_binary()
    except AnvilNotFound as exc:
        return f"anvil is not installed (run `npm ci` or `make test`): {exc}"
    return ""


MISSING = _missing_reason()
needs_anvil = pytest.mark.skipif(bool(MISSING), reason=MISSING or "anvil installed")
