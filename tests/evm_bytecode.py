"""Hand-assembled EVM contracts for chain tests (no compiler needed).

* ``STORE_RUNTIME``: a call with calldata stores its first word in slot 0; a call without
  calldata returns slot 0.
* ``revert_runtime(selector)``: every call reverts with the 4-byte ``selector`` as revert data
  (what a Solidity custom error without arguments looks like).
"""

from __future__ import annotations

from eth_hash.auto import keccak

STORE_RUNTIME = bytes.fromhex(
    "3615600c57"  # CALLDATASIZE ISZERO PUSH1 0x0c JUMPI
    "60003560005500"  # PUSH1 0 CALLDATALOAD PUSH1 0 SSTORE STOP
    "5b600054600052"  # JUMPDEST PUSH1 0 SLOAD PUSH1 0 MSTORE
    "60206000f3"  # PUSH1 32 PUSH1 0 RETURN
)


def revert_runtime(selector: bytes) -> bytes:
    """PUSH4 selector PUSH1 224 SHL PUSH1 0 MSTORE PUSH1 4 PUSH1 0 REVERT."""
    assert len(selector) == 4
    return b"\x63" + selector + bytes.fromhex("60e01b60005260046000fd")


def init_code(runtime: bytes) -> bytes:
    """Creation code that returns ``runtime`` (12-byte CODECOPY/RETURN prelude)."""
    assert len(runtime) < 256
    n = len(runtime)
    prelude = bytes([0x60, n, 0x60, 12, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xF3])
    return prelude + runtime


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")
