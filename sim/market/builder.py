"""The block builder: picks, orders and mines each block; the only code that hands
transactions to the chain.

Selection (``select_transactions``, pure):

* Candidates are the lowest pending nonce of each sender, and only if it equals the sender's
  on-chain nonce (a sender with a gap waits). Ordered by effective priority fee
  ``min(max priority fee, fee cap - base fee)``, ties by arrival order then hash.
* Taking a sender's transaction makes its next nonce a candidate, so a sender's nonce n+1
  never precedes n.
* A candidate is skipped, with all later nonces of its sender, if its fee cap is below the base
  fee, if it does not fit the block's remaining gas, or if the sender's balance (as of the last
  block, less what its earlier transactions in this block may cost) is below
  ``gas limit * fee cap + value``. Space is counted by gas LIMIT, as real builders do before
  executing. Such transactions stay pending (the backlog) for later blocks.
* Background bids take space by priority fee too: a bid at least as high as a candidate's
  effective priority fee goes first (ties go to the background); bids whose fee cap is below
  the base fee stay out. ``Selection.background_included`` is the gas of each offered bid that
  got in (a bid may be partly included); the builder hands it back to background demand that
  has a ``settle`` method (queued background demand, sim/market/background.py).

These rules guarantee the backend never sees a transaction that is invalid at the protocol
level (bad nonce, fee cap below base fee, unaffordable gas, block gas exceeded).

Production (``BlockBuilder.build_block``): drop expired transactions (and the sender's later
nonces, rewinding the session's nonce), price the block (``FeeMarket``), select, mine with the
modelled base fee, record background gas for the next base fee, and return records.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sim.chain.backend import MinedBlock
from sim.chain.records import DroppedRecord, ErrorDecoder, TxRecord, tx_record
from sim.chain.session import ChainSession
from sim.market.feemarket import BackgroundBid, BackgroundDemand, FeeMarket, no_background
from sim.market.mempool import Mempool, PendingTx, Submission, SubmitResult

SKIP_FEE_CAP = "fee_cap_below_base_fee"
SKIP_NO_SPACE = "no_space"
SKIP_FUNDS = "insufficient_funds"
SKIP_NONCE_GAP = "nonce_gap"


def effective_priority_fee_wei(entry: PendingTx, base_fee_wei: int) -> int:
    signed = entry.signed
    return min(signed.max_priority_fee_per_gas_wei, signed.max_fee_per_gas_wei - base_fee_wei)


@dataclass(frozen=True)
class Selection:
    """The builder's choice for one block."""

    chosen: tuple[PendingTx, ...]
    background_gas: int  # background gas that got into the block
    background_demand_gas: int  # background gas that wanted in at this base fee
    background_tips: tuple[tuple[int, int], ...]  # (priority fee, gas) of the bids that got in
    background_included: tuple[int, ...]  # gas of each offered bid that got in, in offer order
    waiting: tuple[tuple[PendingTx, str], ...]  # first skipped tx of each sender, and why
    stale: tuple[PendingTx, ...]  # nonce already used on chain: to be dropped


class _Bids:
    """Background bids in priority order, taking space as the builder walks down the fees."""

    def __init__(self, bids: Sequence[BackgroundBid], base_fee_wei: int) -> None:
        active = [(i, bid) for i, bid in enumerate(bids) if bid.active_at(base_fee_wei)]
        self._queue = sorted(active, key=lambda item: -item[1].priority_fee_wei)
        self.demand_gas = sum(bid.gas for _, bid in active)
        self.used_gas = 0
        self.taken: list[tuple[int, int]] = []  # (priority fee, gas) of each bid that got in
        self.included = [0] * len(bids)  # gas of each bid that got in, in offer order

    def take_down_to(self, priority_fee_wei: int, space: int) -> int:
        """Bids paying at least ``priority_fee_wei`` take space; returns the space left."""
        while self._queue and self._queue[0][1].priority_fee_wei >= priority_fee_wei:
            index, bid = self._queue.pop(0)
            taken = min(bid.gas, space)
            self.used_gas += taken
            self.included[index] = taken
            if taken > 0:
                self.taken.append((bid.priority_fee_wei, taken))
            space -= taken
        return space


def select_transactions(
    queues: Mapping[str, Sequence[PendingTx]],
    *,
    chain_nonce: Callable[[str], int],
    balance_wei: Callable[[str], int],
    base_fee_wei: int,
    gas_limit: int,
    background: Sequence[BackgroundBid] = (),
) -> Selection:
    """Choose and order the transactions of one block (see the module docstring)."""
    heap: list[tuple[int, int, bytes, str, int]] = []
    waiting: list[tuple[PendingTx, str]] = []
    stale: list[PendingTx] = []
    live: dict[str, Sequence[PendingTx]] = {}

    def push(sender: str, position: int) -> None:
        entry = live[sender][position]
        priority = effective_priority_fee_wei(entry, base_fee_wei)
        if priority < 0:
            waiting.append((entry, SKIP_FEE_CAP))
            return
        heapq.heappush(heap, (-priority, entry.seq, entry.tx_hash, sender, position))

    for sender, queue in queues.items():
        on_chain = chain_nonce(sender)
        first = 0
        while first < len(queue) and queue[first].nonce < on_chain:
            stale.append(queue[first])
            first += 1
        if first == len(queue):
            continue
        if queue[first].nonce != on_chain:
            waiting.append((queue[first], SKIP_NONCE_GAP))
            continue
        live[sender] = queue[first:]
        push(sender, 0)

    bids = _Bids(background, base_fee_wei)
    space = gas_limit
    funds: dict[str, int] = {}
    chosen: list[PendingTx] = []
    while heap:
        neg_priority, _, _, sender, position = heapq.heappop(heap)
        space = bids.take_down_to(-neg_priority, space)
        entry = live[sender][position]
        signed = entry.signed
        if signed.gas_limit > space:
            waiting.append((entry, SKIP_NO_SPACE))
            continue
        if sender not in funds:
            funds[sender] = balance_wei(sender)
        cost = signed.max_cost_wei()
        if cost > funds[sender]:
            waiting.append((entry, SKIP_FUNDS))
            continue
        funds[sender] -= cost
        space -= signed.gas_limit
        chosen.append(entry)
        following = position + 1
        if following < len(live[sender]):
            if live[sender][following].nonce == signed.nonce + 1:
                push(sender, following)
            else:
                waiting.append((live[sender][following], SKIP_NONCE_GAP))
    bids.take_down_to(0, space)
    return Selection(
        chosen=tuple(chosen),
        background_gas=bids.used_gas,
        background_demand_gas=bids.demand_gas,
        background_tips=tuple(bids.taken),
        background_included=tuple(bids.included),
        waiting=tuple(waiting),
        stale=tuple(stale),
    )


@dataclass(frozen=True)
class BlockResult:
    """One built block: what was mined, at what fees, and what left the mempool."""

    block: MinedBlock
    step: int
    base_fee_wei: int
    gas_used: int  # our transactions (on chain)
    background_gas_used: int
    background_gas_demanded: int
    included_tips: tuple[tuple[int, int], ...]  # (effective priority fee, gas) of all it carried
    records: tuple[TxRecord, ...]
    dropped: tuple[DroppedRecord, ...]
    waiting: tuple[tuple[str, str], ...]  # (0x tx hash, reason) of each stuck sender's head
    backlog: int  # transactions still pending after this block
    next_base_fee_wei: int


class BlockBuilder:
    """Plays the node's block producer: mempool in, one mined block per ``build_block``.

    ``step`` counts the blocks built by this builder from 0; it is what background demand is
    indexed by. ``errors`` decodes revert reasons in the records.
    """

    def __init__(
        self,
        session: ChainSession,
        *,
        background: BackgroundDemand = no_background,
        errors: ErrorDecoder | None = None,
        price_bump_pct: int = 10,
        max_pending_blocks: int | None = None,
        start_base_fee_wei: int | None = None,
        first_price: bool = False,
    ) -> None:
        self.session = session
        self.background = background
        self.errors = errors or ErrorDecoder()
        self.mempool = Mempool(price_bump_pct=price_bump_pct, max_pending_blocks=max_pending_blocks)
        self.fee_market = FeeMarket(start_base_fee_wei, first_price=first_price)
        self.step = 0
        self._dropped: list[DroppedRecord] = []

    # -- what agents see -------------------------------------------------------------------------

    def next_block_number(self) -> int:
        return self.session.head().number + 1

    def base_fee_wei(self) -> int:
        """Base fee of the block about to be built (agents price their bids with it)."""
        return self.fee_market.base_fee_for_next(self.session.head())

    def submit(self, submission: Submission) -> SubmitResult:
        """Put a signed transaction in the mempool. A refused or replaced transaction is
        reported in the next ``BlockResult.dropped`` as well as in the returned result."""
        block = self.next_block_number()
        signed = submission.signed
        result = self.mempool.submit(submission, block, self.session.confirmed_nonce(signed.sender))
        if result.replaced is not None:
            self._dropped.append(_dropped(result.replaced, block, "replaced"))
        elif not result.accepted and result.reason != "already_known":
            refused = PendingTx(submission, block, -1)
            self._dropped.append(_dropped(refused, block, result.reason))
        return result

    # -- building --------------------------------------------------------------------------------

    def build_block(self) -> BlockResult:
        """Build, mine and record the next block."""
        head = self.session.head()
        number = head.number + 1
        base_fee = self.fee_market.base_fee_for_next(head)
        self._drop_expired(number)
        selection = select_transactions(
            self.mempool.queues(),
            chain_nonce=self.session.confirmed_nonce,
            balance_wei=self.session.balance,
            base_fee_wei=base_fee,
            gas_limit=head.gas_limit,
            background=self.background(self.step, base_fee),
        )
        self.mempool.remove(selection.stale)
        self._dropped.extend(_dropped(entry, number, "nonce_too_low") for entry in selection.stale)
        block = self.session.mine([entry.signed for entry in selection.chosen], base_fee)
        self.mempool.remove(selection.chosen)
        self.fee_market.record(block.number, selection.background_gas)
        settle = getattr(self.background, "settle", None)
        if settle is not None:  # background demand that queues what was left out
            settle(selection.background_included)
        records = tuple(
            tx_record(
                block=block,
                mined=mined,
                sender_kind=entry.submission.sender_kind,
                label=entry.submission.label,
                gas_limit=entry.signed.gas_limit,
                submitted_block=entry.submitted_block,
                errors=self.errors,
            )
            for entry, mined in zip(selection.chosen, block.txs, strict=True)
        )
        dropped, self._dropped = tuple(self._dropped), []
        result = BlockResult(
            block=block,
            step=self.step,
            base_fee_wei=base_fee,
            gas_used=block.gas_used,
            background_gas_used=selection.background_gas,
            background_gas_demanded=selection.background_demand_gas,
            included_tips=selection.background_tips
            + tuple(
                (effective_priority_fee_wei(e, base_fee), e.signed.gas_limit)
                for e in selection.chosen
            ),
            records=records,
            dropped=dropped,
            waiting=tuple(
                (f"0x{entry.tx_hash.hex()}", reason) for entry, reason in selection.waiting
            ),
            backlog=len(self.mempool),
            next_base_fee_wei=self.fee_market.base_fee_for_next(block.head),
        )
        self.step += 1
        return result

    def _drop_expired(self, block_number: int) -> None:
        """Drop expired transactions and their senders' later nonces; re-issue the nonces."""
        lowest: dict[str, PendingTx] = {}
        for entry in self.mempool.expired(block_number):
            if entry.sender not in lowest or entry.nonce < lowest[entry.sender].nonce:
                lowest[entry.sender] = entry
        for sender, first in lowest.items():
            for entry in self.mempool.drop_from(sender, first.nonce):
                expired = self.mempool.is_expired(entry, block_number)
                reason = "expired" if expired else "nonce_gap"
                self._dropped.append(_dropped(entry, block_number, reason))
            self.session.rewind_nonce(sender, first.nonce)


def _dropped(entry: PendingTx, block_number: int, reason: str) -> DroppedRecord:
    signed = entry.signed
    return DroppedRecord(
        tx_hash=f"0x{signed.tx_hash.hex()}",
        sender=signed.sender,
        sender_kind=entry.submission.sender_kind,
        label=entry.submission.label,
        nonce=signed.nonce,
        gas_limit=signed.gas_limit,
        max_fee_per_gas_wei=signed.max_fee_per_gas_wei,
        max_priority_fee_per_gas_wei=signed.max_priority_fee_per_gas_wei,
        submitted_block=entry.submitted_block,
        dropped_block=block_number,
        reason=reason,
    )
