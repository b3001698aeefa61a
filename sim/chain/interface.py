"""The chain backend interface: what the simulation needs from an EVM, whichever runs it.

A backend mines one block per call from already-signed raw transactions, in the given order,
with the timestamp and base fee the caller chooses, and answers read-only calls against the
latest mined state. Its results are the plain records below (``MinedBlock``, ``MinedTx``,
``RawLog``, ``BlockHead``); ``w3`` is a web3.py handle on the same chain for contract objects and
views. The implementations are ``sim.chain.pyevm`` (embedded, the reference) and
``sim.chain.anvil`` (a local anvil process); ``sim.chain.backend`` picks one by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from web3 import Web3

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DYNAMIC_FEE_TX_TYPE = 2
VIEW_GAS_CAP = 50_000_000  # gas given to read-only calls (geth's default RPC gas cap)


class ChainError(Exception):
    """The chain refused a block or a transaction; the message names the cause."""


class CallReverted(ChainError):
    """A read-only call reverted (or failed); ``revert_data`` holds the raw revert bytes."""

    def __init__(self, message: str, revert_data: bytes) -> None:
        super().__init__(message)
        self.revert_data = revert_data


@dataclass(frozen=True)
class GenesisConfig:
    """Fixed genesis of a simulated chain (amounts in wei, time in seconds)."""

    chain_id: int = 31337
    timestamp: int = 1_700_000_000
    block_gas_limit: int = 30_000_000
    base_fee_wei: int = 1_000_000_000
    balances: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class RawLog:
    """An event log as emitted: emitting contract, 32-byte topics, ABI-encoded data."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class MinedTx:
    """What the chain did with one transaction of a mined block."""

    tx_hash: bytes
    sender: str
    nonce: int
    index: int
    status: int
    gas_used: int
    effective_gas_price_wei: int
    logs: tuple[RawLog, ...]
    revert_data: bytes
    contract_address: str | None
    failure: str = ""  # EVM error class name when status == 0 ("Revert", "OutOfGas", ...)


@dataclass(frozen=True)
class BlockHead:
    """Header facts of a mined block."""

    number: int
    timestamp: int
    base_fee_wei: int
    gas_used: int
    gas_limit: int
    block_hash: bytes


@dataclass(frozen=True)
class MinedBlock(BlockHead):
    """A mined block: its header facts and the outcome of each of its transactions, in block
    order."""

    txs: tuple[MinedTx, ...]

    @classmethod
    def of(cls, head: BlockHead, txs: Iterable[MinedTx]) -> MinedBlock:
        """The block with header ``head`` that carried ``txs``."""
        return cls(**{f.name: getattr(head, f.name) for f in fields(BlockHead)}, txs=tuple(txs))

    @property
    def head(self) -> BlockHead:
        return BlockHead(
            self.number,
            self.timestamp,
            self.base_fee_wei,
            self.gas_used,
            self.gas_limit,
            self.block_hash,
        )


class ChainBackend(Protocol):
    """The small surface the simulation needs from an EVM."""

    name: str
    w3: Web3
    genesis: GenesisConfig

    def mine_block(
        self, raw_txs: Sequence[bytes], timestamp: int, base_fee_wei: int
    ) -> MinedBlock: ...

    def call(
        self, to: str, data: bytes, sender: str | None = None, gas: int | None = None
    ) -> bytes: ...

    def balance(self, address: str) -> int: ...

    def nonce(self, address: str) -> int: ...

    def head(self) -> BlockHead: ...

    def close(self) -> None:
        """Release what the backend holds (a process, a port, files); safe to call twice."""
