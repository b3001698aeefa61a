"""Wallets: the layer between agents' intents and the mempool.

The model owns one :class:`Wallet` per agent account. A wallet turns an agent's intent
(:mod:`agents.intents`) into a contract call (through the exchange client), picks the fee cap
(``fee_cap_multiplier`` x the next base fee + the priority fee), refuses what the account cannot
afford (worst-case gas of this and its other pending transactions), signs with the next nonce
and submits to the mempool through the block builder. It keeps the account's pending
transactions, replaces one on request (same nonce, both fees raised by at least the mempool's
replacement bump) and re-prices transactions a base-fee spike priced out (a wallet's "speed
up"). With gas disabled (``run.gas_enabled = false``) every priority fee is 0.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from agents.intents import (
    Action,
    BackstopLiquidate,
    Deleverage,
    Deposit,
    Intent,
    Liquidate,
    OpenSubaccount,
    Pending,
    Replace,
    ReportPrice,
    Send,
    Takeover,
    Trade,
)
from sim.chain.records import DroppedRecord, TxRecord
from sim.chain.session import ChainSession, SignedTx
from sim.exchange.client import Call, System
from sim.market.builder import BlockBuilder
from sim.market.mempool import Submission


def replacement_floor(fee_wei: int, price_bump_pct: int) -> int:
    """The lowest fee a wallet offers when replacing a transaction that paid ``fee_wei``: the
    mempool's bump plus one point, so that rounding never leaves it short."""
    return fee_wei * (100 + price_bump_pct + 1) // 100 + 1


@dataclass
class InFlight:
    """A transaction of ours in the mempool."""

    signed: SignedTx
    action: Action
    label: str
    submitted_step: int


class Wallet:
    """One agent account's signer, nonce keeper and pending-transaction book."""

    def __init__(
        self,
        address: str,
        kind: str,
        session: ChainSession,
        builder: BlockBuilder,
        client: System,
        *,
        gas_free: bool,
        fee_cap_multiplier: float = 2,
        auto_reprice: bool = True,
    ):
        self.address = address
        self.kind = kind
        self._session = session
        self._builder = builder
        self._client = client
        self.gas_free = gas_free
        self.fee_cap_multiplier = fee_cap_multiplier
        self.auto_reprice = auto_reprice  # False: the agent speeds up its own transactions
        self.in_flight: dict[bytes, InFlight] = {}
        self.gas_paid_wei = 0

    # ------------------------------------------------------------------ fees

    def fee_cap_wei(self, next_base_fee_wei: int, priority_fee_wei: int) -> int:
        return int(self.fee_cap_multiplier * next_base_fee_wei) + priority_fee_wei

    def _tip(self, priority_fee_wei: int) -> int:
        return 0 if self.gas_free else priority_fee_wei

    def _bumped(self, fee_wei: int) -> int:
        return replacement_floor(fee_wei, self._builder.mempool.price_bump_pct)

    # --------------------------------------------------------------- actions

    def call_for(self, action: Action) -> Call:
        """The contract call that carries out ``action`` from this account."""
        c, me = self._client, self.address
        match action:
            case Trade(sub, market, size, limit):
                return c.trade_call(me, sub, market, size, limit)
            case Liquidate(owner, sub, n_markets):
                return c.liquidate_call(me, owner, sub, n_markets)
            case Takeover(owner, sub, liq_sub, n_markets):
                return c.takeover_call(me, owner, sub, liq_sub, n_markets)
            case BackstopLiquidate(owner, sub, n_markets):
                return c.backstop_call(me, owner, sub, n_markets)
            case Deleverage(owner, sub, n_markets, n_holders):
                return c.deleverage_call(me, owner, sub, n_markets, n_holders)
            case ReportPrice(market, price_e8):
                return c.report_call(market, price_e8)
            case Deposit(sub, amount):
                return c.deposit_call(me, sub, amount)
            case OpenSubaccount(sub, mode, market):
                return c.open_subaccount_call(me, sub, mode, market)
        raise TypeError(f"unknown action {action!r}")

    # ------------------------------------------------------------- intents

    def carry_out(
        self, decisions: Generator[Intent, Pending | None, None], step: int, next_base_fee_wei: int
    ) -> None:
        """Run an agent's decisions: each intent is executed and its outcome sent back."""
        outcome: Pending | None = None
        while True:
            try:
                intent = decisions.send(outcome)
            except StopIteration:
                return
            outcome = self.execute(intent, step, next_base_fee_wei)

    def execute(self, intent: Intent, step: int, next_base_fee_wei: int) -> Pending | None:
        if isinstance(intent, Send):
            return self.send(intent, step, next_base_fee_wei)
        if isinstance(intent, Replace):
            return self.replace(intent, step, next_base_fee_wei)
        raise TypeError(f"unknown intent {intent!r}")

    def send(self, intent: Send, step: int, next_base_fee_wei: int) -> Pending | None:
        """Sign ``intent`` with the next nonce and submit it; None if we cannot afford its
        worst-case gas (on top of our other pending transactions) or the mempool refuses it."""
        call = self.call_for(intent.action)
        tip = self._tip(intent.priority_fee_wei)
        max_fee = self.fee_cap_wei(next_base_fee_wei, tip)
        if self._session.balance(self.address) < call.gas * max_fee + self.reserved_wei():
            return None
        signed = self._session.sign(self.address, call.to, call.data, call.gas, max_fee, tip)
        return self._submit(signed, intent.action, intent.label, intent.expiry_blocks, step, True)

    def replace(self, intent: Replace, step: int, next_base_fee_wei: int) -> Pending | None:
        """Replace our pending ``intent.tx_id`` (same nonce) by ``intent.action`` (or the same
        call) at a higher priority fee; both fees rise by at least the replacement bump."""
        key = bytes.fromhex(intent.tx_id[2:])
        old = self.in_flight.get(key)
        if old is None:
            return None
        tip = self._tip(intent.priority_fee_wei)
        max_fee = max(
            self.fee_cap_wei(next_base_fee_wei, tip), self._bumped(old.signed.max_fee_per_gas_wei)
        )
        tip = max(tip, self._bumped(old.signed.max_priority_fee_per_gas_wei))
        if intent.action is None:  # the same call
            if self._session.balance(self.address) < old.signed.gas_limit * max_fee:
                return None
            action, signed = old.action, self._session.resign(old.signed, max_fee, tip)
        else:
            action, call = intent.action, self.call_for(intent.action)
            if self._session.balance(self.address) < call.gas * max_fee:
                return None
            signed = self._session.sign(
                self.address, call.to, call.data, call.gas, max_fee, tip, nonce=old.signed.nonce
            )
        result = self._submit(signed, action, old.label, None, step, False)
        if result is not None:
            self.in_flight.pop(key, None)
        return result

    def _submit(
        self,
        signed: SignedTx,
        action: Action,
        label: str,
        expiry_blocks: int | None,
        step: int,
        fresh: bool,
    ) -> Pending | None:
        block = self._builder.next_block_number()  # chain block number it can enter first
        expiry = None if expiry_blocks is None else block + expiry_blocks
        result = self._builder.submit(Submission(signed, self.kind, label, expiry))
        if not result.accepted:
            if fresh:
                self._session.release_nonce(signed)
            return None
        flight = InFlight(signed, action, label, step)
        self.in_flight[signed.tx_hash] = flight
        return self._pending(flight)

    def reprice_stuck(self, step: int, next_base_fee_wei: int) -> None:
        """Re-send (same nonce, same call) every pending transaction whose fee cap the base fee
        has outgrown, at the current fee-cap policy: what a wallet's "speed up" does. Without it
        a transaction priced out in a fee spike would wait forever and block the sender. Off
        (``auto_reprice=False``) for accounts whose agent decides itself when to speed up."""
        if not self.auto_reprice:
            return
        for flight in list(self.in_flight.values()):
            if flight.signed.max_fee_per_gas_wei < next_base_fee_wei:
                tx_id = "0x" + flight.signed.tx_hash.hex()
                tip = flight.signed.max_priority_fee_per_gas_wei
                self.replace(Replace(tx_id, tip), step, next_base_fee_wei)

    # ------------------------------------------------------------- bookkeeping

    def reserved_wei(self) -> int:
        """Worst-case gas of our transactions still in the mempool."""
        return sum(
            f.signed.gas_limit * f.signed.max_fee_per_gas_wei for f in self.in_flight.values()
        )

    def _pending(self, flight: InFlight) -> Pending:
        signed = flight.signed
        return Pending(
            tx_id="0x" + signed.tx_hash.hex(),
            label=flight.label,
            action=flight.action,
            priority_fee_wei=signed.max_priority_fee_per_gas_wei,
            max_fee_wei=signed.max_fee_per_gas_wei,
            submitted_step=flight.submitted_step,
            min_replacement_priority_fee_wei=self._bumped(signed.max_priority_fee_per_gas_wei),
        )

    def pending(self) -> tuple[Pending, ...]:
        """Our pending transactions, oldest first (what the agent's view shows)."""
        if not self.in_flight:  # most agents, most blocks
            return ()
        return tuple(self._pending(f) for f in self.in_flight.values())

    def included(self, record: TxRecord) -> None:
        """One of our transactions was mined."""
        self.in_flight.pop(bytes.fromhex(record.tx_hash[2:]), None)
        self.gas_paid_wei += record.fee_paid_wei

    def dropped(self, record: DroppedRecord) -> None:
        """One of our transactions left the mempool unmined."""
        self.in_flight.pop(bytes.fromhex(record.tx_hash[2:]), None)
