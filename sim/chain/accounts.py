"""Deterministic development accounts derived from a seed.

Key ``i`` of seed ``s`` is ``keccak(b"liqsim-account" || s (32 bytes) || i (32 bytes))``
reduced into the valid secp256k1 range ``[1, n - 1]``. The same seed always gives the
same accounts, on any machine, with no hidden randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from coincurve import PrivateKey
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN = b"liqsim-account"
_WORD = 32


@dataclass(frozen=True)
class DevAccount:
    """A funded development account: checksum address and raw 32-byte private key."""

    address: str
    private_key: bytes


def _check_word(value: int, name: str) -> None:
    if not 0 <= value < 2 ** (8 * _WORD):
        raise ValueError(f"{name} must be an int in [0, 2**256), got {value!r}")


def derive_private_key(seed: int, index: int) -> bytes:
    """Private key number ``index`` for ``seed`` (32 bytes, a valid secp256k1 scalar)."""
    _check_word(seed, "seed")
    _check_word(index, "account index")
    digest = keccak(_DOMAIN + seed.to_bytes(_WORD, "big") + index.to_bytes(_WORD, "big"))
    scalar = int.from_bytes(digest, "big") % (SECP256K1_ORDER - 1) + 1
    return scalar.to_bytes(_WORD, "big")


def address_of(private_key: bytes) -> str:
    """Checksum address of a 32-byte private key."""
    public = PrivateKey(private_key).public_key.format(compressed=False)[1:]
    return to_checksum_address(keccak(public)[-20:])


@lru_cache(maxsize=4096)
def checksum_address(address: str) -> str:
    """``to_checksum_address``, remembered: a pure function of its argument, and a run meets
    the same few hundred addresses in every block's events and transactions."""
    return to_checksum_address(address)


def derive_accounts(seed: int, count: int) -> list[DevAccount]:
    """The first ``count`` accounts of ``seed``, in index order."""
    if count < 0:
        raise ValueError(f"account count must be >= 0, got {count}")
    keys = (derive_private_key(seed, i) for i in range(count))
    return [DevAccount(address=address_of(key), private_key=key) for key in keys]
