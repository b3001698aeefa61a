"""Chain backends: which EVM runs, chosen by name. The only code that picks one.

``make_backend(name, genesis)`` builds the backend the scenario's ``chain.backend`` names:

* ``pyevm`` (the default and the reference): py-evm behind eth-tester, embedded in this
  process (:mod:`sim.chain.pyevm`).
* ``anvil``: a local anvil process (Foundry, Rust EVM) reached over JSON-RPC, about five
  times faster on the simulation's transactions; ``fork_url`` runs it on a fork of a real
  chain (:mod:`sim.chain.anvil`, docs/backends.md).

Both implement :class:`ChainBackend` (:mod:`sim.chain.interface`) and are imported only when
chosen, so a run on one never loads the other. The interface's records and errors are
re-exported here for the modules that have always imported them from this one.
"""

from __future__ import annotations

from typing import Any

from sim.chain.interface import (
    DYNAMIC_FEE_TX_TYPE,
    VIEW_GAS_CAP,
    ZERO_ADDRESS,
    BlockHead,
    CallReverted,
    ChainBackend,
    ChainError,
    GenesisConfig,
    MinedBlock,
    MinedTx,
    RawLog,
)

__all__ = [
    "BACKEND_NAMES",
    "DYNAMIC_FEE_TX_TYPE",
    "VIEW_GAS_CAP",
    "ZERO_ADDRESS",
    "BlockHead",
    "CallReverted",
    "ChainBackend",
    "ChainError",
    "GenesisConfig",
    "MinedBlock",
    "MinedTx",
    "RawLog",
    "check_backend",
    "make_backend",
]

BACKEND_NAMES = ("pyevm", "anvil")


def check_backend(name: str) -> None:
    """Raise ``ChainError`` (saying how to fix it) if backend ``name`` cannot start here."""
    if name not in BACKEND_NAMES:
        raise ChainError(f"unknown chain backend {name!r}; available: {', '.join(BACKEND_NAMES)}")
    if name == "anvil":
        from sim.chain.anvil.binary import anvil_binary

        anvil_binary()


def make_backend(name: str, genesis: GenesisConfig, *, fork_url: str = "") -> ChainBackend:
    """Build the chain backend called ``name`` (one of ``BACKEND_NAMES``).

    ``fork_url`` (anvil only) is the JSON-RPC endpoint of a chain to fork."""
    if name not in BACKEND_NAMES:
        raise ChainError(f"unknown chain backend {name!r}; available: {', '.join(BACKEND_NAMES)}")
    if fork_url and name != "anvil":
        raise ChainError(f"fork_url needs the anvil backend; chain backend is {name!r}")
    if name == "anvil":
        from sim.chain.anvil import AnvilBackend

        return AnvilBackend(genesis, fork_url=fork_url)
    from sim.chain.pyevm import PyEVMBackend

    return PyEVMBackend(genesis)


def __getattr__(name: str) -> Any:
    """``PyEVMBackend`` and ``prevrandao`` still import from here (loaded on first use)."""
    if name in ("PyEVMBackend", "prevrandao"):
        from sim.chain import pyevm

        return getattr(pyevm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
