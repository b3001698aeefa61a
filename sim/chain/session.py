"""The chain session: one simulated chain, its funded accounts, their nonces and signing.

``ChainSession`` owns the backend, the deterministic dev accounts, and a nonce book. Nonces are
issued by the session, never read back from the chain per transaction:

* ``sign`` issues the sender's next nonce (or re-uses an issued, unconfirmed one for a
  replace-by-fee, see ``resign``).
* ``mine`` confirms the nonce of every transaction that the chain included (reverted ones too).
* A transaction that leaves the mempool without being mined leaves a gap. The block builder
  then drops every later pending transaction of that sender and calls ``rewind_nonce`` so the
  sender's next ``sign`` re-issues the dropped nonce. An agent that signs a transaction and
  decides not to submit it calls ``release_nonce`` (only the latest issued nonce can be
  released).

Transactions are typed EIP-1559 (type 2), signed with coincurve. Every transaction carries an
explicit gas limit; nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import rlp
from coincurve import PrivateKey
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak
from eth_utils import to_canonical_address, to_checksum_address
from web3 import Web3

from sim.chain.accounts import DevAccount, checksum_address, derive_accounts
from sim.chain.backend import (
    BlockHead,
    ChainBackend,
    ChainError,
    GenesisConfig,
    MinedBlock,
    MinedTx,
    make_backend,
)
from sim.chain.eip1559 import next_base_fee_wei

TX_BASE_GAS = 21_000
TX_CREATE_GAS = 32_000
TX_DATA_ZERO_GAS = 4
TX_DATA_NONZERO_GAS = 16
INITCODE_WORD_GAS = 2
MAX_INITCODE_BYTES = 49_152
TRANSFER_GAS = 21_000
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")


class TxRevertedError(ChainError):
    """A set-up transaction (``transact``/``deploy``) was mined but reverted."""

    def __init__(self, message: str, mined: MinedTx) -> None:
        super().__init__(message)
        self.mined = mined


@dataclass(frozen=True)
class SignedTx:
    """A signed EIP-1559 transaction and the fields the mempool and builder need."""

    raw: bytes
    tx_hash: bytes
    sender: str
    nonce: int
    to: str | None
    gas_limit: int
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    value_wei: int
    data: bytes = b""

    def max_cost_wei(self) -> int:
        """Most the sender can be charged: gas limit at the fee cap, plus value."""
        return self.gas_limit * self.max_fee_per_gas_wei + self.value_wei


def intrinsic_gas(data: bytes, is_create: bool) -> int:
    """Gas a transaction costs before executing any code (Cancun rules)."""
    zeros = data.count(0)
    gas = TX_BASE_GAS + zeros * TX_DATA_ZERO_GAS + (len(data) - zeros) * TX_DATA_NONZERO_GAS
    if is_create:
        gas += TX_CREATE_GAS + INITCODE_WORD_GAS * ((len(data) + 31) // 32)
    return gas


def sign_dynamic_fee_tx(
    key: PrivateKey,
    *,
    chain_id: int,
    nonce: int,
    to: bytes,
    data: bytes,
    gas: int,
    max_fee_per_gas_wei: int,
    max_priority_fee_per_gas_wei: int,
    value_wei: int,
) -> tuple[bytes, bytes]:
    """Raw bytes and hash of a signed type-2 transaction (``to`` is b"" for a create)."""
    fields = [
        chain_id,
        nonce,
        max_priority_fee_per_gas_wei,
        max_fee_per_gas_wei,
        gas,
        to,
        value_wei,
        data,
        [],
    ]
    signature = key.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    raw = b"\x02" + rlp.encode([*fields, signature[64], r, s])
    return raw, keccak(raw)


def describe_revert(revert_data: bytes) -> str:
    """Short human description of revert data without an ABI (Error(string) is decoded)."""
    if revert_data[:4] == ERROR_STRING_SELECTOR:
        try:
            (message,) = abi_decode(["string"], revert_data[4:])
        except DecodingError:
            return f"0x{revert_data.hex()}"
        return f"Error({message!r})"
    return f"0x{revert_data.hex()}" if revert_data else "no revert data"


class ChainSession:
    """One simulated chain: backend, funded dev accounts, nonce book, signing and mining."""

    def __init__(
        self,
        genesis: GenesisConfig | None = None,
        *,
        seed: int = 0,
        n_accounts: int = 20,
        account_balance_wei: int = 10**24,
        block_time_s: int = 12,
        backend: str = "pyevm",
        fork_url: str = "",
    ) -> None:
        if block_time_s <= 0:
            raise ValueError(f"block_time_s must be positive, got {block_time_s}")
        if account_balance_wei < 0:
            raise ValueError(f"account_balance_wei must be >= 0, got {account_balance_wei}")
        self.accounts: list[DevAccount] = derive_accounts(seed, n_accounts)
        self.genesis = _with_account_balances(
            genesis or GenesisConfig(), self.accounts, account_balance_wei
        )
        self.block_time_s = block_time_s
        self.backend: ChainBackend = make_backend(backend, self.genesis, fork_url=fork_url)
        self.w3: Web3 = self.backend.w3
        self._keys = {a.address: PrivateKey(a.private_key) for a in self.accounts}
        self._next_nonce: dict[str, int] = {}
        self._confirmed_nonce: dict[str, int] = {}

    def close(self) -> None:
        """Release the backend (stops an anvil process); the session is unusable after."""
        self.backend.close()

    def __enter__(self) -> ChainSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- accounts and nonces -------------------------------------------------------------------

    def _known(self, sender: str) -> str:
        if sender in self._keys:
            return sender
        address = to_checksum_address(sender)
        if address not in self._keys:
            raise ValueError(f"{sender} is not one of this session's accounts (no key)")
        return address

    def confirmed_nonce(self, sender: str) -> int:
        """Number of ``sender``'s transactions the chain has included (its on-chain nonce)."""
        return self._confirmed_nonce.get(self._known(sender), 0)

    def rewind_nonce(self, sender: str, nonce: int) -> None:
        """Re-issue nonces from ``nonce`` on: every transaction of ``sender`` with a nonce at
        or above it is gone (dropped, never submitted). Called by the block builder on drops."""
        sender = self._known(sender)
        confirmed = self._confirmed_nonce.get(sender, 0)
        issued = self._next_nonce.get(sender, 0)
        if not confirmed <= nonce <= issued:
            raise ValueError(
                f"cannot rewind {sender} to nonce {nonce}: confirmed {confirmed}, "
                f"next to issue {issued}"
            )
        self._next_nonce[sender] = nonce

    def release_nonce(self, signed: SignedTx) -> None:
        """Give back the nonce of a signed transaction that will never be submitted."""
        issued = self._next_nonce.get(signed.sender, 0)
        if signed.nonce != issued - 1:
            raise ValueError(
                f"only the latest issued nonce can be released: {signed.sender} nonce "
                f"{signed.nonce}, latest issued {issued - 1}; drop later transactions first"
            )
        self.rewind_nonce(signed.sender, signed.nonce)

    # -- signing -------------------------------------------------------------------------------

    def sign(
        self,
        sender: str,
        to: str | None,
        data: bytes,
        gas: int,
        max_fee_per_gas_wei: int,
        max_priority_fee_per_gas_wei: int,
        value_wei: int = 0,
        *,
        nonce: int | None = None,
    ) -> SignedTx:
        """Sign a call (or a create when ``to`` is None) from one of the session's accounts.

        Issues the sender's next nonce, unless ``nonce`` names an issued, still unconfirmed
        nonce (a replacement). Refuses what no block could include: gas limit below the
        intrinsic cost or above the block gas limit, fee cap below the priority fee.
        """
        sender = self._known(sender)
        self._check_tx_shape(
            to=to,
            data=data,
            gas=gas,
            max_fee_per_gas_wei=max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei=max_priority_fee_per_gas_wei,
            value_wei=value_wei,
        )
        issued = self._next_nonce.get(sender, 0)
        if nonce is None:
            nonce = issued
            self._next_nonce[sender] = issued + 1
        elif not self._confirmed_nonce.get(sender, 0) <= nonce < issued:
            raise ValueError(
                f"nonce {nonce} of {sender} is not issued and unconfirmed "
                f"(confirmed {self._confirmed_nonce.get(sender, 0)}, next {issued})"
            )
        to_checksum = None if to is None else checksum_address(to)
        raw, tx_hash = sign_dynamic_fee_tx(
            self._keys[sender],
            chain_id=self.genesis.chain_id,
            nonce=nonce,
            to=b"" if to is None else to_canonical_address(to),
            data=data,
            gas=gas,
            max_fee_per_gas_wei=max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei=max_priority_fee_per_gas_wei,
            value_wei=value_wei,
        )
        return SignedTx(
            raw=raw,
            tx_hash=tx_hash,
            sender=sender,
            nonce=nonce,
            to=to_checksum,
            gas_limit=gas,
            max_fee_per_gas_wei=max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei=max_priority_fee_per_gas_wei,
            value_wei=value_wei,
            data=data,
        )

    def resign(
        self, old: SignedTx, max_fee_per_gas_wei: int, max_priority_fee_per_gas_wei: int
    ) -> SignedTx:
        """The same call with the same nonce and new fees (for replace-by-fee)."""
        return self.sign(
            old.sender,
            old.to,
            old.data,
            old.gas_limit,
            max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei,
            old.value_wei,
            nonce=old.nonce,
        )

    def _check_tx_shape(
        self,
        *,
        to: str | None,
        data: bytes,
        gas: int,
        max_fee_per_gas_wei: int,
        max_priority_fee_per_gas_wei: int,
        value_wei: int,
    ) -> None:
        if min(max_fee_per_gas_wei, max_priority_fee_per_gas_wei, value_wei) < 0:
            raise ValueError("fees and value must be >= 0")
        if max_priority_fee_per_gas_wei > max_fee_per_gas_wei:
            raise ValueError(
                f"priority fee {max_priority_fee_per_gas_wei} exceeds fee cap "
                f"{max_fee_per_gas_wei} (wei per gas)"
            )
        if to is None and len(data) > MAX_INITCODE_BYTES:
            raise ValueError(f"init code of {len(data)} bytes exceeds {MAX_INITCODE_BYTES}")
        floor = intrinsic_gas(data, to is None)
        if gas < floor:
            raise ValueError(f"gas limit {gas} is below the intrinsic cost {floor}")
        if gas > self.genesis.block_gas_limit:
            raise ValueError(
                f"gas limit {gas} exceeds the block gas limit {self.genesis.block_gas_limit}"
            )

    # -- chain ---------------------------------------------------------------------------------

    def head(self) -> BlockHead:
        return self.backend.head()

    def balance(self, address: str) -> int:
        return self.backend.balance(address)

    def call(self, to: str, data: bytes, sender: str | None = None) -> bytes:
        """Read-only call on the latest mined state (raises ``CallReverted``)."""
        return self.backend.call(to, data, sender)

    def chain_base_fee_wei(self) -> int:
        """The chain's own EIP-1559 base fee for the next block (from our gas only)."""
        head = self.backend.head()
        return next_base_fee_wei(head.base_fee_wei, head.gas_used, head.gas_limit)

    def mine(self, signed: Sequence[SignedTx], base_fee_wei: int | None = None) -> MinedBlock:
        """Mine one block of ``signed`` in order, ``block_time_s`` after the head.

        ``base_fee_wei`` defaults to the chain's own EIP-1559 value. The caller (the block
        builder) guarantees that every transaction is valid at that base fee.
        """
        head = self.backend.head()
        if base_fee_wei is None:
            base_fee_wei = next_base_fee_wei(head.base_fee_wei, head.gas_used, head.gas_limit)
        block = self.backend.mine_block(
            [tx.raw for tx in signed], head.timestamp + self.block_time_s, base_fee_wei
        )
        for tx in block.txs:
            self._confirmed_nonce[tx.sender] = tx.nonce + 1
            if self._next_nonce.get(tx.sender, 0) <= tx.nonce:
                self._next_nonce[tx.sender] = tx.nonce + 1
        return block

    # -- set-up helpers (mine a one-transaction block now) -------------------------------------

    def transact(
        self,
        sender: str,
        to: str | None,
        data: bytes,
        gas: int,
        value_wei: int = 0,
        *,
        require_success: bool = True,
    ) -> MinedTx:
        """Sign and mine a one-transaction block at the chain's own base fee, no priority fee.

        For set-up only: the sender must have no transaction waiting in a mempool. Raises
        ``TxRevertedError`` on revert unless ``require_success`` is False.
        """
        base_fee = self.chain_base_fee_wei()
        signed = self.sign(sender, to, data, gas, base_fee, 0, value_wei)
        mined = self.mine([signed], base_fee_wei=base_fee).txs[0]
        if mined.status == 0 and require_success:
            target = "contract creation" if to is None else f"call to {to}"
            raise TxRevertedError(
                f"{target} from {sender} reverted ({mined.failure}): "
                f"{describe_revert(mined.revert_data)}",
                mined,
            )
        return mined

    def deploy(self, sender: str, bytecode_with_args: bytes, gas: int) -> str:
        """Deploy a contract; returns its checksum address, raises ``TxRevertedError``."""
        mined = self.transact(sender, None, bytecode_with_args, gas)
        assert mined.contract_address is not None
        return mined.contract_address

    def fund(self, to: str, value_wei: int, *, sender: str | None = None) -> MinedTx:
        """Send ETH to ``to`` from ``sender`` (default: the first dev account)."""
        return self.transact(sender or self.accounts[0].address, to, b"", TRANSFER_GAS, value_wei)


def _with_account_balances(
    genesis: GenesisConfig, accounts: Sequence[DevAccount], balance_wei: int
) -> GenesisConfig:
    explicit = {to_checksum_address(address) for address, _ in genesis.balances}
    extra = tuple((a.address, balance_wei) for a in accounts if a.address not in explicit)
    return replace(genesis, balances=genesis.balances + extra)
