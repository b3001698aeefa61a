"""The base of every agent that sends transactions.

Agents decide; they never touch the backend. They read the chain through the model's
:class:`sim.exchange.view.ChainView`, and send signed transaction intents to the block builder's mempool
with a priority fee. The model tells each agent what became of its transactions
(``on_included`` with the receipt record and its decoded events, ``on_dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mesa

from sim.exchange.client import Call
from sim.market.mempool import TxIntent

if TYPE_CHECKING:
    from sim.chain.events import Event
    from sim.chain.records import DroppedRecord, TxRecord
    from sim.chain.session import SignedTx
    from sim.model import LiqSimModel

GWEI = 10**9


@dataclass
class InFlight:
    """A transaction of ours in the mempool."""

    signed: SignedTx
    label: str
    submitted_step: int  # the model step (block index) it was sent in


class ChainAgent(mesa.Agent):
    """A Mesa agent with an on-chain account."""

    kind = "agent"
    model: LiqSimModel

    def __init__(self, model: LiqSimModel, address: str):
        super().__init__(model)
        self.address = address
        self.in_flight: dict[bytes, InFlight] = {}
        self.gas_paid_wei = 0

    # ------------------------------------------------------------------ sending

    def max_fee_wei(self, priority_fee_wei: int) -> int:
        """Fee cap: twice the next base fee plus the priority fee (the reporter overrides)."""
        return self.model.fee_cap_wei(priority_fee_wei)

    def send(
        self, call: Call, priority_fee_wei: int, label: str = "", expiry_blocks: int | None = None
    ) -> SignedTx | None:
        """Sign ``call`` and submit it; None if we cannot afford its worst-case gas."""
        priority_fee_wei = self.model.priority_fee(priority_fee_wei)
        max_fee = self.max_fee_wei(priority_fee_wei)
        if self.model.session.balance(self.address) < call.gas * max_fee + self.reserved_wei():
            return None
        signed = self.model.session.sign(
            self.address, call.to, call.data, call.gas, max_fee, priority_fee_wei
        )
        return self._submit(signed, label or call.label, expiry_blocks, fresh=True)

    def bump(self, tx_hash: bytes, priority_fee_wei: int) -> SignedTx | None:
        """Replace our pending ``tx_hash`` by the same call at a higher priority fee."""
        return self.replace(tx_hash, None, priority_fee_wei)

    def replace(self, tx_hash: bytes, call: Call | None, priority_fee_wei: int) -> SignedTx | None:
        """Replace our pending ``tx_hash`` (same nonce) by ``call`` (or the same call) at a higher
        priority fee; both fees rise by at least the mempool's replacement bump."""
        old = self.in_flight.get(tx_hash)
        if old is None:
            return None
        priority_fee_wei = self.model.priority_fee(priority_fee_wei)
        max_fee = max(
            self.max_fee_wei(priority_fee_wei), old.signed.max_fee_per_gas_wei * 111 // 100 + 1
        )
        priority_fee_wei = max(
            priority_fee_wei, old.signed.max_priority_fee_per_gas_wei * 111 // 100 + 1
        )
        to, data, gas = (
            (old.signed.to, old.signed.data, old.signed.gas_limit)
            if call is None
            else (call.to, call.data, call.gas)
        )
        if self.model.session.balance(self.address) < gas * max_fee:
            return None
        signed = self.model.session.sign(
            self.address, to, data, gas, max_fee, priority_fee_wei, nonce=old.signed.nonce
        )
        result = self._submit(signed, old.label, None, fresh=False)
        if result is not None:
            self.in_flight.pop(tx_hash, None)
        return result

    def _submit(
        self, signed: SignedTx, label: str, expiry_blocks: int | None, *, fresh: bool
    ) -> SignedTx | None:
        block = self.model.builder.next_block_number()  # chain block number it can enter first
        expiry = None if expiry_blocks is None else block + expiry_blocks
        result = self.model.builder.submit(TxIntent(signed, self.kind, label, expiry))
        if not result.accepted:
            if fresh:
                self.model.session.release_nonce(signed)
            return None
        self.in_flight[signed.tx_hash] = InFlight(signed, label, self.model.block)
        return signed

    def reprice_stuck(self) -> None:
        """Re-send (same nonce, same call) every pending transaction whose fee cap the base fee
        has outgrown, at the current fee-cap policy: what a wallet's "speed up" does. Without it
        a transaction priced out in a fee spike would wait forever and block the sender."""
        base_fee = self.model.next_base_fee_wei()
        for tx_hash, flight in list(self.in_flight.items()):
            if flight.signed.max_fee_per_gas_wei < base_fee:
                self.bump(tx_hash, flight.signed.max_priority_fee_per_gas_wei)

    def reserved_wei(self) -> int:
        """Worst-case gas of our transactions still in the mempool."""
        return sum(
            f.signed.gas_limit * f.signed.max_fee_per_gas_wei for f in self.in_flight.values()
        )

    def pending_labels(self) -> set[str]:
        return {f.label for f in self.in_flight.values()}

    # ----------------------------------------------------------------- feedback

    def notify_included(self, record: TxRecord, events: list[Event]) -> None:
        """Called by the model for each of our mined transactions."""
        self.in_flight.pop(bytes.fromhex(record.tx_hash[2:]), None)
        self.gas_paid_wei += record.fee_paid_wei
        self.on_included(record, events)

    def notify_dropped(self, record: DroppedRecord) -> None:
        """Called by the model for each of our transactions that left the mempool unmined."""
        self.in_flight.pop(bytes.fromhex(record.tx_hash[2:]), None)
        self.on_dropped(record)

    def on_included(self, record: TxRecord, events: list[Event]) -> None:
        """Hook: one of our transactions was mined (status 1 or reverted)."""

    def on_dropped(self, record: DroppedRecord) -> None:
        """Hook: one of our transactions was dropped (expired, replaced, refused)."""

    def step(self) -> None:
        """Observe the view and send transactions."""
