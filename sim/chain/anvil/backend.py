"""The anvil backend: blocks mined by a local anvil process, exactly as the caller ordered them.

Per block: ``anvil_setNextBlockBaseFeePerGas`` (the simulation's fee market sets the base
fee), one ``eth_sendRawTransaction`` per transaction in block order on one persistent
connection (anvil runs with ``--order fifo``, so its pool keeps that order), then ``evm_mine``
with the block's timestamp. The mined block is checked against what was asked: every
transaction, in the given order, at the given base fee and timestamp. Anything else (a
transaction refused by the pool, one left waiting, a different order) refuses the whole block:
the pool is emptied and a mined block is rolled back (``anvil_rollback``), so the chain is
unchanged, as on py-evm.

Receipts come from ``eth_getBlockReceipts`` (one request per block); revert data and the failure
kind only for failed transactions, from the trace anvil recorded when it mined them
(``trace_transaction``). Views are ``eth_call`` on the latest block.

Deterministic: the same inputs give the same blocks and block hashes on every run. The hashes
differ from py-evm's (anvil fills the header's state root and PREVRANDAO its own way; PREVRANDAO
cannot be set through anvil's API, and liqsim's contracts never read it). See docs/backends.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import rlp
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from sim.chain.anvil.process import AnvilDied, AnvilProcess
from sim.chain.anvil.provider import web3_for
from sim.chain.anvil.rpc import RpcClient, RpcError
from sim.chain.interface import (
    DYNAMIC_FEE_TX_TYPE,
    VIEW_GAS_CAP,
    ZERO_ADDRESS,
    BlockHead,
    CallReverted,
    ChainError,
    GenesisConfig,
    MinedBlock,
    MinedTx,
    RawLog,
)

HARDFORK = "cancun"
KEPT_STATES = 8
#: parity-trace error of a failed transaction -> py-evm's error class name (``MinedTx.failure``)
FAILURES = {
    "Reverted": "Revert",
    "Out of gas": "OutOfGas",
    "Bad instruction": "InvalidInstruction",
    "Bad jump destination": "InvalidJumpDestination",
    "Out of stack": "FullStack",
    "Stack underflow": "InsufficientStack",
    "Mutable Call In Static Context": "WriteProtection",
}
_FORKS_AT_ZERO = [
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "berlinBlock",
    "londonBlock",
    "mergeNetsplitBlock",
]


def genesis_json(genesis: GenesisConfig) -> str:
    """The genesis file anvil is started from (``--init``): Cancun from block 0."""
    config: dict[str, Any] = {"chainId": genesis.chain_id, "terminalTotalDifficulty": 0}
    config.update(dict.fromkeys(_FORKS_AT_ZERO, 0))
    config.update({"shanghaiTime": 0, "cancunTime": 0})
    alloc: dict[str, Any] = {}
    for address, wei in genesis.balances:
        key = to_checksum_address(address)
        if key in alloc:
            raise ChainError(f"genesis balances list {address} twice")
        if wei < 0:
            raise ChainError(f"genesis balance of {address} is negative ({wei} wei)")
        alloc[key] = {"balance": hex(wei)}
    return json.dumps(
        {
            "config": config,
            "timestamp": hex(genesis.timestamp),
            "gasLimit": hex(genesis.block_gas_limit),
            "baseFeePerGas": hex(genesis.base_fee_wei),
            "difficulty": "0x0",
            "extraData": "0x",
            "mixHash": "0x" + "00" * 32,
            "nonce": "0x0",
            "coinbase": ZERO_ADDRESS,
            "alloc": alloc,
        }
    )


def anvil_options(genesis: GenesisConfig, fork_url: str = "") -> list[str]:
    """anvil's options for a chain: blocks only on demand, transactions in arrival order."""
    options = [
        "--no-mining",
        "--order",
        "fifo",
        "--hardfork",
        HARDFORK,
        "--accounts",
        "0",
        "--disable-default-create2-deployer",
        "--chain-id",
        str(genesis.chain_id),
        "--gas-limit",
        str(genesis.block_gas_limit),
        # one runtime thread (each sweep worker owns its anvil) and a few recent states in
        # memory (a rollback needs the parent's; views read the latest): long runs stay small
        "--threads",
        "1",
        "--prune-history",
        str(KEPT_STATES),
    ]
    if fork_url:
        return [*options, "--fork-url", fork_url]
    return [*options, "--init", "genesis.json"]


def _int(value: str) -> int:
    return int(value, 16)


def _bytes(value: str | None) -> bytes:
    return bytes.fromhex(value[2:]) if value else b""


class AnvilBackend:
    """A chain on a local anvil process, one process per backend (see the module doc)."""

    name = "anvil"

    def __init__(self, genesis: GenesisConfig, *, fork_url: str = "") -> None:
        if genesis.block_gas_limit <= 0:
            raise ChainError(f"block_gas_limit must be positive, got {genesis.block_gas_limit}")
        if genesis.base_fee_wei < 0:
            raise ChainError(f"genesis base_fee_wei must be >= 0, got {genesis.base_fee_wei}")
        self.genesis = genesis
        self.fork_url = fork_url
        files = {} if fork_url else {"genesis.json": genesis_json(genesis)}
        self._process = AnvilProcess(anvil_options(genesis, fork_url), files=files)
        self._rpc = RpcClient(self._process.host, self._process.port, self._transport_error)
        self._checksums: dict[str, str] = {}
        self._balances: dict[str, int] = {}  # read since the last block (only mining changes them)
        try:
            self._check_ready()
            if fork_url:
                self._fund_on_fork()
            self._head = self._read_head()
        except BaseException:
            self.close()
            raise
        self.w3 = web3_for(self._rpc)

    # -- process ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The JSON-RPC endpoint of this chain's anvil (loopback only)."""
        return self._process.url

    @property
    def process(self) -> AnvilProcess:
        return self._process

    def _transport_error(self, method: str, exc: Exception) -> Exception:
        process = self._process
        if not process.exited_within(0.5):
            return ChainError(f"lost the connection to anvil at {process.url} ({method}): {exc}")
        return AnvilDied(f"anvil stopped during {method}: {process.describe_exit()}")

    def _check_ready(self) -> None:
        chain_id = _int(self._rpc.request("eth_chainId"))
        if chain_id != self.genesis.chain_id:
            raise ChainError(f"anvil runs chain id {chain_id}, expected {self.genesis.chain_id}")

    def _fund_on_fork(self) -> None:
        """Give every genesis account its balance on the forked chain; they must be unused."""
        for address, wei in self.genesis.balances:
            used = _int(self._rpc.request("eth_getTransactionCount", address, "latest"))
            if used:
                raise ChainError(
                    f"account {address} has sent {used} transaction(s) on the forked chain "
                    "(liqsim's accounts must be fresh there: use another seed)"
                )
            self._rpc.request("anvil_setBalance", address, hex(wei))

    def close(self) -> None:
        """Stop the anvil process (idempotent)."""
        self._rpc.close()
        self._process.stop()

    # -- reads -------------------------------------------------------------------------------------

    def _read_head(self) -> BlockHead:
        block = self._rpc.request("eth_getBlockByNumber", "latest", False)
        return _head_of(block)

    def head(self) -> BlockHead:
        return self._head

    def balance(self, address: str) -> int:
        cached = self._balances.get(address)
        if cached is None:
            cached = _int(self._rpc.request("eth_getBalance", address, "latest"))
            self._balances[address] = cached
        return cached

    def nonce(self, address: str) -> int:
        return _int(self._rpc.request("eth_getTransactionCount", address, "latest"))

    def call(
        self, to: str, data: bytes, sender: str | None = None, gas: int | None = None
    ) -> bytes:
        """Read-only call on the latest state; raises ``CallReverted`` with the revert data."""
        tx = {
            "from": sender or ZERO_ADDRESS,
            "to": to,
            "data": "0x" + data.hex(),
            "gas": hex(VIEW_GAS_CAP if gas is None else gas),
        }
        try:
            return _bytes(self._rpc.request("eth_call", tx, "latest"))
        except RpcError as exc:
            revert = exc.data if isinstance(exc.data, str) and exc.data.startswith("0x") else ""
            raise CallReverted(
                f"call to {to} failed: {exc.message} (revert data {revert or '0x'})", _bytes(revert)
            ) from exc

    # -- mining ------------------------------------------------------------------------------------

    def mine_block(self, raw_txs: Sequence[bytes], timestamp: int, base_fee_wei: int) -> MinedBlock:
        """Mine ``raw_txs`` in order as the next block, or refuse it and leave the chain as it was.

        Raises ``ChainError`` when a transaction is invalid at the protocol level (bad nonce,
        fee cap below the base fee, unaffordable gas, wrong chain id), the timestamp does not
        advance, or anvil would mine anything but exactly these transactions in this order."""
        parent = self._head
        number = parent.number + 1
        if timestamp <= parent.timestamp:
            raise ChainError(
                f"block timestamp {timestamp} must be later than the parent's {parent.timestamp}"
            )
        if base_fee_wei < 0:
            raise ChainError(f"base_fee_wei must be >= 0, got {base_fee_wei}")
        hashes = [self._check_type(i, raw) for i, raw in enumerate(raw_txs)]
        self._balances.clear()
        rpc = self._rpc
        rpc.request("anvil_setNextBlockBaseFeePerGas", hex(base_fee_wei))
        for i, raw in enumerate(raw_txs):
            try:
                rpc.request("eth_sendRawTransaction", "0x" + raw.hex())
            except RpcError as exc:
                self._drop_pool()
                raise ChainError(
                    f"block {number} refused: transaction #{i} 0x{hashes[i].hex()} "
                    f"(nonce {_nonce_text(raw)}) is invalid: {exc.message}"
                ) from exc
        if raw_txs:  # an empty block needs neither (a stray transaction fails _check_mined)
            self._check_pool(number, raw_txs, hashes)
        rpc.request("evm_mine", timestamp)
        block = rpc.request("eth_getBlockByNumber", hex(number), False)
        self._check_mined(block, number, hashes, timestamp, base_fee_wei)
        receipts = rpc.request("eth_getBlockReceipts", hex(number)) if raw_txs else []
        mined = tuple(
            self._mined_tx(i, raw, receipt)
            for i, (raw, receipt) in enumerate(zip(raw_txs, receipts, strict=True))
        )
        self._head = _head_of(block)
        return MinedBlock.of(self._head, mined)

    def _check_type(self, index: int, raw: bytes) -> bytes:
        if not raw or raw[0] != DYNAMIC_FEE_TX_TYPE:
            raise ChainError(f"transaction #{index} is not an EIP-1559 (type 2) transaction")
        return keccak(raw)

    def _drop_pool(self) -> None:
        self._rpc.request("anvil_dropAllTransactions")

    def _check_pool(self, number: int, raw_txs: Sequence[bytes], hashes: list[bytes]) -> None:
        """Every transaction sent must be ready to mine (none waiting for a missing nonce)."""
        status = self._rpc.request("txpool_status")
        pending, queued = _int(status["pending"]), _int(status["queued"])
        if pending == len(raw_txs) and not queued:
            return
        waiting = self._queued_hashes()
        self._drop_pool()
        first = next((i for i, h in enumerate(hashes) if h in waiting), None)
        which = (
            f"transaction #{first} 0x{hashes[first].hex()} (nonce {_nonce_text(raw_txs[first])}) "
            "waits for an earlier nonce (a nonce gap)"
            if first is not None
            else f"anvil's pool holds {pending} ready and {queued} waiting transactions, "
            f"not the {len(raw_txs)} sent"
        )
        raise ChainError(f"block {number} refused: {which}")

    def _queued_hashes(self) -> set[bytes]:
        content = self._rpc.request("txpool_content").get("queued", {})
        return {_bytes(tx["hash"]) for by_nonce in content.values() for tx in by_nonce.values()}

    def _check_mined(
        self,
        block: dict[str, Any],
        number: int,
        hashes: list[bytes],
        timestamp: int,
        base_fee_wei: int,
    ) -> None:
        """The mined block is exactly what was asked for, or it is rolled back."""
        got = [_bytes(tx_hash) for tx_hash in block["transactions"]]
        problems = []
        if _int(block["number"]) != number:
            problems.append(f"number {_int(block['number'])} instead of {number}")
        if _int(block["timestamp"]) != timestamp:
            problems.append(f"timestamp {_int(block['timestamp'])} instead of {timestamp}")
        if _int(block.get("baseFeePerGas", "0x0")) != base_fee_wei:
            problems.append(f"base fee {_int(block['baseFeePerGas'])} instead of {base_fee_wei}")
        if got != hashes:
            misplaced = sum(1 for a, b in zip(got, hashes, strict=False) if a != b)
            problems.append(
                f"{len(got)} transactions instead of {len(hashes)}, {misplaced} out of place"
            )
        if problems:
            self._rpc.request("anvil_rollback", 1)
            self._drop_pool()
            raise ChainError(
                f"block {number} refused: anvil mined a different block ({'; '.join(problems)}); "
                "it was rolled back"
            )

    def _checksum(self, address: str) -> str:
        cached = self._checksums.get(address)
        if cached is None:
            cached = self._checksums[address] = to_checksum_address(address)
        return cached

    def _mined_tx(self, index: int, raw: bytes, receipt: dict[str, Any]) -> MinedTx:
        ok = receipt["status"] == "0x1"
        revert, failure = (b"", "") if ok else self._failure(receipt["transactionHash"])
        created = receipt.get("contractAddress")
        return MinedTx(
            tx_hash=_bytes(receipt["transactionHash"]),
            sender=self._checksum(receipt["from"]),
            nonce=_nonce_of(raw),
            index=index,
            status=1 if ok else 0,
            gas_used=_int(receipt["gasUsed"]),
            effective_gas_price_wei=_int(receipt["effectiveGasPrice"]),
            logs=tuple(
                RawLog(
                    address=self._checksum(log["address"]),
                    topics=tuple(_bytes(t) for t in log["topics"]),
                    data=_bytes(log["data"]),
                )
                for log in receipt["logs"]
            ),
            revert_data=revert,
            contract_address=None if created is None else self._checksum(created),
            failure=failure,
        )

    def _failure(self, tx_hash: str) -> tuple[bytes, str]:
        """Revert data and py-evm's name for the error of a failed transaction."""
        traces = self._rpc.request("trace_transaction", tx_hash) or []
        top = next((t for t in traces if not t.get("traceAddress")), None)
        if top is None:
            return b"", "Unknown"
        error = str(top.get("error") or "Unknown")
        output = (top.get("result") or {}).get("output")
        return _bytes(output), FAILURES.get(error, error)


def _head_of(block: dict[str, Any]) -> BlockHead:
    return BlockHead(
        number=_int(block["number"]),
        timestamp=_int(block["timestamp"]),
        base_fee_wei=_int(block.get("baseFeePerGas") or "0x0"),
        gas_used=_int(block["gasUsed"]),
        gas_limit=_int(block["gasLimit"]),
        block_hash=_bytes(block["hash"]),
    )


def _nonce_of(raw: bytes) -> int:
    """The nonce of a raw type-2 transaction (field 1 of its RLP list)."""
    return int.from_bytes(rlp.decode(raw[1:])[1], "big")


def _nonce_text(raw: bytes) -> str:
    """The nonce for an error message ("?" when the bytes do not decode)."""
    try:
        return str(_nonce_of(raw))
    except Exception:
        return "?"
