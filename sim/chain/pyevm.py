"""The py-evm backend: py-evm (Cancun rules) behind eth-tester, embedded in this process.

The embedded default and the reference every other backend is checked against. web3.py views
and contract objects work through ``backend.w3`` (eth-tester's provider).

Blocks are never built through eth-tester's send path (it executes every transaction twice and
refuses a sender's second transaction in a block); the whole ordered block is applied in one
``MiningChain.mine_all`` call. Timestamps and ``mix_hash`` (PREVRANDAO) are set explicitly, so
the same inputs give the same block hashes on every run.

The header base fee of every mined block is the caller's ``base_fee_wei``: the VM used here
checks the gas limit of a header but not its base fee against the parent's EIP-1559 value, so the
simulation's fee market (which also counts background demand) is what transactions pay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eth.abc import ComputationAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.chains.base import MiningChain
from eth.constants import POST_MERGE_DIFFICULTY, POST_MERGE_MIX_HASH, POST_MERGE_NONCE
from eth.db.atomic import AtomicDB
from eth.validation import validate_gas_limit
from eth.vm.forks import CancunVM
from eth.vm.spoof import SpoofTransaction
from eth_hash.auto import keccak
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import PyEVMBackend as EthTesterPyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import ValidationError, to_canonical_address, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.providers.eth_tester.defaults import API_ENDPOINTS

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

_PREVRANDAO_DOMAIN = b"liqsim-prevrandao"


# --------------------------------------------------------------------------------------------
# py-evm chain with settable base fee and no wall clock
# --------------------------------------------------------------------------------------------


class _SimulationVM(CancunVM):
    """Cancun rules; the header base fee is set by the simulation's fee market."""

    @classmethod
    def validate_gas(cls, header: Any, parent_header: Any) -> None:
        validate_gas_limit(header.gas_limit, parent_header.gas_limit)


class _SimulationChain(MiningChain):
    vm_configuration = ((0, _SimulationVM),)
    chain_id = 31337

    def create_header_from_parent(self, parent_header: Any, **header_params: Any) -> Any:
        # Constant gas limit, and a timestamp that never reads the wall clock; the real
        # timestamp of a block is set by PyEVMBackend.mine_block.
        header_params.setdefault("gas_limit", parent_header.gas_limit)
        header_params.setdefault("timestamp", parent_header.timestamp + 1)
        return super().create_header_from_parent(parent_header, **header_params)

    def get_transaction_builder(self) -> Any:  # used by eth-tester's call normalisation
        return self.get_vm().get_transaction_builder()


def _genesis_state(balances: Sequence[tuple[str, int]]) -> dict[bytes, dict[str, Any]]:
    state: dict[bytes, dict[str, Any]] = {}
    for address, wei in balances:
        key = to_canonical_address(address)
        if key in state:
            raise ChainError(f"genesis balances list {address} twice")
        if wei < 0:
            raise ChainError(f"genesis balance of {address} is negative ({wei} wei)")
        state[key] = {"balance": wei, "nonce": 0, "code": b"", "storage": {}}
    return state


def _new_chain(genesis: GenesisConfig) -> _SimulationChain:
    if genesis.block_gas_limit <= 0:
        raise ChainError(f"block_gas_limit must be positive, got {genesis.block_gas_limit}")
    if genesis.base_fee_wei < 0:
        raise ChainError(f"genesis base_fee_wei must be >= 0, got {genesis.base_fee_wei}")
    params = {
        "coinbase": to_canonical_address(ZERO_ADDRESS),
        "difficulty": POST_MERGE_DIFFICULTY,
        "extra_data": b"",
        "gas_limit": genesis.block_gas_limit,
        "mix_hash": POST_MERGE_MIX_HASH,
        "nonce": POST_MERGE_NONCE,
        "timestamp": genesis.timestamp,
        "base_fee_per_gas": genesis.base_fee_wei,
    }
    chain = _SimulationChain.from_genesis(AtomicDB(), params, _genesis_state(genesis.balances))
    chain.chain_id = genesis.chain_id
    return chain


def prevrandao(block_number: int) -> bytes:
    """Deterministic ``mix_hash`` (PREVRANDAO) of a block."""
    return keccak(_PREVRANDAO_DOMAIN + block_number.to_bytes(32, "big"))


# --------------------------------------------------------------------------------------------
# Read-only execution (shared by backend.call and web3's eth_call)
# --------------------------------------------------------------------------------------------


class _ViewExecutor:
    """Runs calls on the state after the latest block, with a zero base fee (like geth)."""

    def __init__(self, chain: _SimulationChain) -> None:
        self._chain = chain
        self._cached: tuple[bytes, StateAPI] | None = None

    def invalidate(self) -> None:
        self._cached = None

    def state(self, header: Any = None) -> StateAPI:
        if header is None:
            header = self._chain.get_canonical_head()
            if self._cached is not None and self._cached[0] == header.hash:
                return self._cached[1]
            state = self._build_state(header)
            self._cached = (header.hash, state)
            return state
        return self._build_state(header)

    def _build_state(self, header: Any) -> StateAPI:
        return self._chain.get_vm(header.copy(base_fee_per_gas=0)).state

    def execute(
        self, *, sender: bytes, to: bytes, data: bytes, value: int, gas: int, header: Any = None
    ) -> ComputationAPI:
        state = self.state(header)
        unsigned = self._chain.get_transaction_builder().new_unsigned_dynamic_fee_transaction(
            chain_id=self._chain.chain_id,
            nonce=state.get_nonce(sender),
            max_priority_fee_per_gas=0,
            max_fee_per_gas=0,
            gas=gas,
            to=to,
            value=value,
            data=data,
            access_list=(),
        )
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(SpoofTransaction(unsigned, from_=sender))
        finally:
            state.revert(snapshot)


class _TesterBackend(EthTesterPyEVMBackend):
    """eth-tester's backend over our chain: web3 reads work, web3 writes are refused."""

    def __init__(self, chain: _SimulationChain, views: _ViewExecutor) -> None:
        # Deliberately not calling super().__init__: it would build its own chain.
        self.account_keys = ()
        self.chain = chain
        self._views = views

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ChainError(
            "liqsim mines blocks only through the block builder (ChainSession.mine); "
            "web3 transaction sending, mining, time travel and snapshots are disabled"
        )

    send_raw_transaction = _refuse
    send_signed_transaction = _refuse
    send_transaction = _refuse
    mine_blocks = _refuse
    time_travel = _refuse
    reset_to_genesis = _refuse
    revert_to_snapshot = _refuse
    apply_withdrawals = _refuse

    def estimate_gas(self, transaction: Any, block_number: Any = "latest") -> int:
        raise ChainError("liqsim never estimates gas: pass an explicit gas limit")

    def _header_for(self, block_number: Any) -> Any:
        if block_number in ("latest", "safe", "finalized", "pending"):
            return None
        if block_number == "earliest":
            block_number = 0
        return self.chain.get_canonical_block_header_by_number(block_number)

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
        computation = self._views.execute(
            sender=transaction["from"],
            to=transaction.get("to", b""),
            data=transaction.get("data", b""),
            value=transaction.get("value", 0),
            gas=transaction.get("gas", VIEW_GAS_CAP),
            header=self._header_for(block_number),
        )
        if computation.is_error:
            raise TransactionFailed(computation.output or str(computation.error))
        return computation.output


def _web3_for(tester_backend: _TesterBackend, chain_id: int) -> Web3:
    endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
    endpoints["eth"]["chainId"] = lambda *_args: chain_id
    tester = EthereumTester(backend=tester_backend, auto_mine_transactions=False)
    w3 = Web3(EthereumTesterProvider(tester, api_endpoints=endpoints))
    w3.eth.default_account = ZERO_ADDRESS  # "from" of eth_call when none is given
    return w3


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------


class PyEVMBackend:
    """py-evm (Cancun rules) behind eth-tester; blocks are mined with one ``mine_all`` call."""

    name = "pyevm"

    def __init__(self, genesis: GenesisConfig) -> None:
        self.genesis = genesis
        self._chain = _new_chain(genesis)
        self._views = _ViewExecutor(self._chain)
        self.w3 = _web3_for(_TesterBackend(self._chain, self._views), genesis.chain_id)
        self._decode: Callable[[bytes], SignedTransactionAPI] = (
            self._chain.get_vm().get_transaction_builder().decode
        )
        self._checksums: dict[bytes, str] = {}

    # -- reads ---------------------------------------------------------------------------------

    def head(self) -> BlockHead:
        return _head_of(self._chain.get_canonical_head())

    def balance(self, address: str) -> int:
        return self._views.state().get_balance(to_canonical_address(address))

    def nonce(self, address: str) -> int:
        return self._views.state().get_nonce(to_canonical_address(address))

    def call(
        self, to: str, data: bytes, sender: str | None = None, gas: int | None = None
    ) -> bytes:
        """Read-only call on the latest state; raises ``CallReverted`` with the revert data."""
        computation = self._views.execute(
            sender=to_canonical_address(sender or ZERO_ADDRESS),
            to=to_canonical_address(to),
            data=data,
            value=0,
            gas=VIEW_GAS_CAP if gas is None else gas,
        )
        if computation.is_error:
            error = computation.error
            raise CallReverted(
                f"call to {to} failed: {type(error).__name__} "
                f"(revert data 0x{computation.output.hex()})",
                computation.output,
            )
        return computation.output

    # -- mining --------------------------------------------------------------------------------

    def mine_block(self, raw_txs: Sequence[bytes], timestamp: int, base_fee_wei: int) -> MinedBlock:
        """Apply ``raw_txs`` in order as the next block and persist it.

        Raises ``ChainError`` (and leaves the chain unchanged) when a transaction is invalid at
        the protocol level (bad nonce, fee cap below the base fee, unaffordable gas, gas limit
        above what the block has left, wrong chain id) or the timestamp does not advance.
        """
        parent = self._chain.get_canonical_head()
        if timestamp <= parent.timestamp:
            raise ChainError(
                f"block timestamp {timestamp} must be later than the parent's {parent.timestamp}"
            )
        if base_fee_wei < 0:
            raise ChainError(f"base_fee_wei must be >= 0, got {base_fee_wei}")
        txs = [self._decode_raw(i, raw) for i, raw in enumerate(raw_txs)]
        number = parent.block_number + 1
        pending_header = self._chain.create_header_from_parent(parent).copy(
            timestamp=timestamp, base_fee_per_gas=base_fee_wei, mix_hash=prevrandao(number)
        )
        self._chain.header = pending_header
        self._views.invalidate()
        try:
            result, receipts, computations = self._chain.mine_all(txs)
        except ValidationError as exc:
            self._chain.header = self._chain.create_header_from_parent(parent)
            raise self._explain_invalid_block(pending_header, txs, raw_txs, exc) from exc
        except BaseException:
            self._chain.header = self._chain.create_header_from_parent(parent)
            raise
        header = result.imported_block.header
        mined = tuple(
            self._mined_tx(
                index=i,
                raw=raw,
                tx=tx,
                receipts=receipts,
                computation=computations[i],
                base_fee_wei=base_fee_wei,
            )
            for i, (raw, tx) in enumerate(zip(raw_txs, txs, strict=True))
        )
        return MinedBlock.of(_head_of(header), mined)

    def _decode_raw(self, index: int, raw: bytes) -> SignedTransactionAPI:
        if not raw or raw[0] != DYNAMIC_FEE_TX_TYPE:
            raise ChainError(f"transaction #{index} is not an EIP-1559 (type 2) transaction")
        try:
            tx = self._decode(raw)
        except Exception as exc:
            raise ChainError(f"transaction #{index} could not be decoded: {exc}") from exc
        if tx.chain_id != self.genesis.chain_id:
            raise ChainError(
                f"transaction #{index} (0x{keccak(raw).hex()}) has chain id {tx.chain_id}, "
                f"the chain's is {self.genesis.chain_id}"
            )
        return tx

    def _explain_invalid_block(
        self,
        header: Any,
        txs: Sequence[SignedTransactionAPI],
        raw_txs: Sequence[bytes],
        exc: Exception,
    ) -> ChainError:
        """Find the first transaction py-evm refuses (error path only; nothing is persisted)."""
        vm = self._chain.get_vm(header)
        running = header
        for i, tx in enumerate(txs):
            try:
                receipt, _ = vm.apply_transaction(running, tx)
            except ValidationError as tx_exc:
                return ChainError(
                    f"block {header.block_number} refused: transaction #{i} "
                    f"0x{keccak(raw_txs[i]).hex()} from {self._checksum(tx.sender)} "
                    f"nonce {tx.nonce} is invalid: {tx_exc}"
                )
            running = vm.add_receipt_to_header(running, receipt)
        return ChainError(f"block {header.block_number} refused: {exc}")

    def _checksum(self, address: bytes) -> str:
        cached = self._checksums.get(address)
        if cached is None:
            cached = self._checksums[address] = to_checksum_address(address)
        return cached

    def _mined_tx(
        self,
        *,
        index: int,
        raw: bytes,
        tx: SignedTransactionAPI,
        receipts: Sequence[ReceiptAPI],
        computation: ComputationAPI,
        base_fee_wei: int,
    ) -> MinedTx:
        receipt = receipts[index]
        previous_cumulative = receipts[index - 1].gas_used if index else 0
        ok = computation.is_success
        logs = tuple(
            RawLog(
                address=self._checksum(log.address),
                topics=tuple(topic.to_bytes(32, "big") for topic in log.topics),
                data=log.data,
            )
            for log in receipt.logs
        )
        created = computation.msg.storage_address if tx.to == b"" else None
        return MinedTx(
            tx_hash=keccak(raw),
            sender=self._checksum(tx.sender),
            nonce=tx.nonce,
            index=index,
            status=1 if ok else 0,
            gas_used=receipt.gas_used - previous_cumulative,
            effective_gas_price_wei=min(
                tx.max_fee_per_gas, tx.max_priority_fee_per_gas + base_fee_wei
            ),
            logs=logs,
            revert_data=b"" if ok else computation.output,
            contract_address=None if created is None else self._checksum(created),
            failure="" if ok else type(computation.error).__name__,
        )

    def close(self) -> None:
        """Nothing to release: the chain lives in this process's memory."""


def _head_of(header) -> BlockHead:
    """A py-evm block header's facts."""
    return BlockHead(
        number=header.block_number,
        timestamp=header.timestamp,
        base_fee_wei=header.base_fee_per_gas,
        gas_used=header.gas_used,
        gas_limit=header.gas_limit,
        block_hash=header.hash,
    )
