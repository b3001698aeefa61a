"""The anvil backend: a local anvil process (Foundry's Rust EVM) driven over JSON-RPC.

``binary`` finds the executable the npm package ``@foundry-rs/anvil`` installs under
``node_modules``; ``process`` starts one anvil per chain on a free loopback port and stops it;
``rpc`` is the JSON-RPC client on one persistent connection; ``provider`` hands that connection
to web3.py; ``backend`` implements :class:`~sim.chain.interface.ChainBackend` on top.
See docs/backends.md. Nothing is imported until used (``binary`` alone is light).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "AnvilBackend": "sim.chain.anvil.backend",
    "AnvilDied": "sim.chain.anvil.process",
    "AnvilProcess": "sim.chain.anvil.process",
    "AnvilNotFound": "sim.chain.anvil.binary",
    "anvil_binary": "sim.chain.anvil.binary",
}

__all__ = ["AnvilBackend", "AnvilDied", "AnvilNotFound", "AnvilProcess", "anvil_binary"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
