"""Contract calls encoded and decoded with eth_abi directly, without web3's per-call overhead.

web3's contract objects walk every argument and result through generic normalizers: for
``healthOf`` on 150 accounts that is about 50 ms a call against 5 ms for the same call encoded
here and run on anvil (both backends pay it; the simulation makes one such read per block).
A :class:`FunctionCodec` is built once per function from its ABI entry. Only what eth_abi
encodes as is goes through it; callers fall back to web3 for anything it refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from eth_utils.abi import collapse_if_tuple


@dataclass(frozen=True)
class FunctionCodec:
    """Selector, input and output types of one contract function."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, abi: Sequence[Mapping[str, Any]], name: str) -> FunctionCodec:
        """The codec of the function ``name`` (which must not be overloaded) in ``abi``."""
        entries = [e for e in abi if e.get("type") == "function" and e.get("name") == name]
        if len(entries) != 1:
            raise ValueError(f"{name}: {len(entries)} functions of that name in the ABI")
        (entry,) = entries
        return cls(
            name,
            function_abi_to_4byte_selector(entry),
            tuple(collapse_if_tuple(dict(i)) for i in entry["inputs"]),
            tuple(collapse_if_tuple(dict(o)) for o in entry.get("outputs", ())),
        )

    def encode(self, args: Sequence[Any]) -> bytes:
        """Calldata of ``name(*args)`` (eth_abi's errors when an argument does not fit)."""
        return self.selector + abi_encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """The function's return values (addresses lower-case, structs as tuples)."""
        return abi_decode(list(self.outputs), data)
