"""Plain per-transaction records, and revert reasons decoded by 4-byte selector.

``TxRecord`` is one row per transaction the chain included (successful or reverted);
``DroppedRecord`` is one row per transaction that left the mempool without being mined (expired,
replaced, cut off by a nonce gap, refused on submission). Amounts are ints in wei; hashes are
0x-prefixed hex strings, so records go straight into tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from sim.chain.backend import MinedBlock, MinedTx

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class DecodedRevert:
    """A revert decoded: error name ("" if no data), and a readable detail."""

    name: str
    detail: str
    args: tuple[Any, ...] = ()


def _abi_type(param: Mapping[str, Any]) -> str:
    kind = param["type"]
    if not kind.startswith("tuple"):
        return kind
    inner = ",".join(_abi_type(component) for component in param.get("components", ()))
    return f"({inner}){kind[len('tuple') :]}"


class ErrorDecoder:
    """Decodes revert data by selector: custom errors from ABI entries, Error and Panic."""

    def __init__(self, error_entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, tuple[str, ...]]] = {
            ERROR_STRING_SELECTOR: ("Error", ("string",)),
            PANIC_SELECTOR: ("Panic", ("uint256",)),
        }
        for entry in error_entries:
            if entry.get("type") != "error":
                continue
            types = tuple(_abi_type(p) for p in entry.get("inputs", ()))
            signature = f"{entry['name']}({','.join(types)})"
            self._errors[keccak(signature.encode())[:4]] = (entry["name"], types)

    @classmethod
    def from_abis(cls, *abis: Sequence[Mapping[str, Any]]) -> ErrorDecoder:
        """Collect the error entries of whole contract ABIs."""
        return cls(entry for abi in abis for entry in abi)

    def decode(self, revert_data: bytes) -> DecodedRevert:
        if not revert_data:
            return DecodedRevert("", "")
        selector = revert_data[:4]
        known = self._errors.get(selector)
        if known is None:
            return DecodedRevert(f"0x{selector.hex()}", f"0x{revert_data.hex()}")
        name, types = known
        try:
            args = tuple(abi_decode(list(types), revert_data[4:]))
        except (DecodingError, ValueError, OverflowError):
            return DecodedRevert(name, f"undecodable arguments 0x{revert_data[4:].hex()}")
        if name == "Panic":
            return DecodedRevert(name, hex(args[0]), args)
        if name == "Error":
            return DecodedRevert(name, str(args[0]), args)
        return DecodedRevert(name, ", ".join(_show(arg) for arg in args), args)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return f"0x{value.hex()}"
    return str(value)


@dataclass(frozen=True)
class TxRecord:
    """One included transaction (status 1 ok, 0 reverted; reverted ones paid gas too)."""

    tx_hash: str
    block_number: int
    index_in_block: int
    sender: str
    sender_kind: str
    label: str
    nonce: int
    gas_limit: int
    gas_used: int
    base_fee_wei: int
    effective_gas_price_wei: int
    priority_fee_per_gas_wei: int
    fee_paid_wei: int
    status: int
    revert_reason: str  # error name: custom error, "Error", "Panic", 0x-selector, or ""
    revert_detail: str  # Error message, panic code, or custom error arguments
    failure: str  # EVM error class when reverted ("Revert", "OutOfGas", ...), else ""
    submitted_block: int
    inclusion_delay_blocks: int


@dataclass(frozen=True)
class DroppedRecord:
    """A transaction that left the mempool without being mined, and why."""

    tx_hash: str
    sender: str
    sender_kind: str
    label: str
    nonce: int
    gas_limit: int
    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    submitted_block: int
    dropped_block: int
    reason: str  # "expired", "replaced", "nonce_gap", "nonce_too_low", "underpriced_replacement"


def tx_record(
    *,
    block: MinedBlock,
    mined: MinedTx,
    sender_kind: str,
    label: str,
    gas_limit: int,
    submitted_block: int,
    errors: ErrorDecoder,
) -> TxRecord:
    """Record of one mined transaction."""
    revert = errors.decode(mined.revert_data) if mined.status == 0 else DecodedRevert("", "")
    return TxRecord(
        tx_hash=f"0x{mined.tx_hash.hex()}",
        block_number=block.number,
        index_in_block=mined.index,
        sender=mined.sender,
        sender_kind=sender_kind,
        label=label,
        nonce=mined.nonce,
        gas_limit=gas_limit,
        gas_used=mined.gas_used,
        base_fee_wei=block.base_fee_wei,
        effective_gas_price_wei=mined.effective_gas_price_wei,
        priority_fee_per_gas_wei=mined.effective_gas_price_wei - block.base_fee_wei,
        fee_paid_wei=mined.gas_used * mined.effective_gas_price_wei,
        status=mined.status,
        revert_reason=revert.name,
        revert_detail=revert.detail,
        failure=mined.failure,
        submitted_block=submitted_block,
        inclusion_delay_blocks=block.number - submitted_block,
    )
