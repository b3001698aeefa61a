"""The mempool: signed transactions waiting for a block.

Rules (geth-like):

* One pending transaction per (sender, nonce). A new one with the same sender and nonce replaces
  it only if it raises both the fee cap and the priority fee by at least ``price_bump_pct``
  percent (default 10, as geth): ``new * 100 >= old * (100 + bump)``. Otherwise it is refused
  ("underpriced_replacement") and the old one stays.
* A transaction whose nonce the chain already used is refused ("nonce_too_low"); the same hash
  twice is refused ("already_known").
* Expiry: a submission may carry ``expiry_block`` (the last block it may enter); the mempool
  may also have ``max_pending_blocks`` (a transaction still pending after that many blocks is
  dropped). What happens to the sender's later nonces is the block builder's job (it drops them and
  rewinds the session's nonce).

``submitted_block`` is the number of the first block a transaction could enter (the block being
built when it was submitted), so an inclusion delay of 0 means "in the very next block".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from sim.chain.session import SignedTx


@dataclass(frozen=True)
class Submission:
    """A signed transaction as submitted to the mempool: who sent it (kind), what it is for
    (label) and the last block it may enter."""

    signed: SignedTx
    sender_kind: str  # "trader", "liquidator", "oracle", "arbitrageur", "setup", ...
    label: str = ""  # what it is for, e.g. "liquidate:0xabc/1"
    expiry_block: int | None = None  # last block it may be included in


@dataclass(frozen=True)
class PendingTx:
    """A submission in the mempool, with when it arrived."""

    submission: Submission
    submitted_block: int
    seq: int  # global arrival order, the deterministic tie-break

    @property
    def signed(self) -> SignedTx:
        return self.submission.signed

    @property
    def sender(self) -> str:
        return self.submission.signed.sender

    @property
    def nonce(self) -> int:
        return self.submission.signed.nonce

    @property
    def tx_hash(self) -> bytes:
        return self.submission.signed.tx_hash


@dataclass(frozen=True)
class SubmitResult:
    """What the mempool did with a submission."""

    accepted: bool
    reason: str  # "added", "replaced", "already_known", "nonce_too_low", "underpriced_replacement"
    replaced: PendingTx | None = None


def bumps(old: SignedTx, new: SignedTx, price_bump_pct: int) -> bool:
    """Whether ``new`` raises both fee cap and priority fee of ``old`` by the bump."""
    factor = 100 + price_bump_pct
    return (
        new.max_fee_per_gas_wei * 100 >= old.max_fee_per_gas_wei * factor
        and new.max_priority_fee_per_gas_wei * 100 >= old.max_priority_fee_per_gas_wei * factor
    )


class Mempool:
    """Pending transactions by sender and nonce."""

    def __init__(self, *, price_bump_pct: int = 10, max_pending_blocks: int | None = None) -> None:
        if price_bump_pct < 0:
            raise ValueError(f"price_bump_pct must be >= 0, got {price_bump_pct}")
        if max_pending_blocks is not None and max_pending_blocks < 1:
            raise ValueError(f"max_pending_blocks must be >= 1, got {max_pending_blocks}")
        self.price_bump_pct = price_bump_pct
        self.max_pending_blocks = max_pending_blocks
        self._by_sender: dict[str, dict[int, PendingTx]] = {}
        self._hashes: set[bytes] = set()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._hashes

    def submit(
        self, submission: Submission, submitted_block: int, confirmed_nonce: int
    ) -> SubmitResult:
        """Add ``submission``; ``confirmed_nonce`` is the sender's nonce on chain."""
        signed = submission.signed
        if signed.tx_hash in self._hashes:
            return SubmitResult(False, "already_known")
        if signed.nonce < confirmed_nonce:
            return SubmitResult(False, "nonce_too_low")
        queue = self._by_sender.setdefault(signed.sender, {})
        old = queue.get(signed.nonce)
        if old is not None and not bumps(old.signed, signed, self.price_bump_pct):
            return SubmitResult(False, "underpriced_replacement")
        entry = PendingTx(submission, submitted_block, next(self._seq))
        queue[signed.nonce] = entry
        self._hashes.add(signed.tx_hash)
        if old is None:
            return SubmitResult(True, "added")
        self._hashes.discard(old.tx_hash)
        return SubmitResult(True, "replaced", old)

    def pending(self) -> list[PendingTx]:
        """Every pending transaction in arrival order (what agents can see of competitors)."""
        return sorted(
            (entry for queue in self._by_sender.values() for entry in queue.values()),
            key=lambda entry: entry.seq,
        )

    def queues(self) -> dict[str, list[PendingTx]]:
        """Each sender's pending transactions in nonce order."""
        return {
            sender: [queue[n] for n in sorted(queue)]
            for sender, queue in self._by_sender.items()
            if queue
        }

    def remove(self, entries: Iterable[PendingTx]) -> None:
        """Take out transactions (e.g. the ones just mined)."""
        for entry in entries:
            queue = self._by_sender.get(entry.sender)
            if queue is not None and queue.get(entry.nonce) is entry:
                del queue[entry.nonce]
                self._hashes.discard(entry.tx_hash)
                if not queue:
                    del self._by_sender[entry.sender]

    def expired(self, block_number: int) -> list[PendingTx]:
        """Transactions that may not enter block ``block_number`` (not removed here)."""
        return [entry for entry in self.pending() if self.is_expired(entry, block_number)]

    def is_expired(self, entry: PendingTx, block_number: int) -> bool:
        expiry = entry.submission.expiry_block
        if expiry is not None and expiry < block_number:
            return True
        limit = self.max_pending_blocks
        return limit is not None and block_number - entry.submitted_block >= limit

    def drop_from(self, sender: str, nonce: int) -> list[PendingTx]:
        """Remove ``sender``'s transactions with nonce >= ``nonce``; returns them by nonce."""
        queue = self._by_sender.get(sender, {})
        dropped = [queue[n] for n in sorted(queue) if n >= nonce]
        self.remove(dropped)
        return dropped
