"""Mempool rules: replace-by-fee, refusals, expiry; and drops with nonce re-issue."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from sim.chain.session import ChainSession, SignedTx
from sim.market.builder import BlockBuilder
from sim.market.mempool import Mempool, Submission
from sim.units import GWEI

ALICE = "0x" + "aa" * 20
BOB = "0x" + "bb" * 20


def _tx(sender: str, nonce: int, max_fee: int, priority: int, salt: int = 0) -> SignedTx:
    tx_hash = keccak(f"{sender}/{nonce}/{max_fee}/{priority}/{salt}".encode())
    return SignedTx(b"", tx_hash, sender, nonce, BOB, 50_000, max_fee, priority, 0)


def _intent(tx: SignedTx, expiry_block: int | None = None) -> Submission:
    return Submission(tx, "liquidator", f"liquidate:{tx.nonce}", expiry_block)


def test_replacement_needs_ten_percent_more_on_both_fees() -> None:
    pool = Mempool()
    old = _tx(ALICE, 0, 100 * GWEI, 10 * GWEI)
    assert pool.submit(_intent(old), 1, 0).reason == "added"
    too_small = _tx(ALICE, 0, 110 * GWEI, 10 * GWEI + 1)
    assert pool.submit(_intent(too_small), 1, 0).reason == "underpriced_replacement"
    only_tip = _tx(ALICE, 0, 100 * GWEI, 20 * GWEI)
    assert pool.submit(_intent(only_tip), 1, 0).reason == "underpriced_replacement"
    enough = _tx(ALICE, 0, 110 * GWEI, 11 * GWEI)
    result = pool.submit(_intent(enough), 2, 0)
    assert (result.accepted, result.reason, result.replaced.signed) == (True, "replaced", old)
    assert [p.signed for p in pool.pending()] == [enough]
    assert old.tx_hash not in pool
    assert enough.tx_hash in pool


def test_duplicates_and_used_nonces_are_refused() -> None:
    pool = Mempool()
    tx = _tx(ALICE, 3, GWEI, GWEI)
    assert pool.submit(_intent(tx), 1, 3).accepted
    assert pool.submit(_intent(tx), 1, 3).reason == "already_known"
    assert pool.submit(_intent(_tx(BOB, 0, GWEI, GWEI)), 1, 1).reason == "nonce_too_low"
    assert len(pool) == 1


def test_expiry_by_block_and_by_age() -> None:
    pool = Mempool(max_pending_blocks=3)
    by_block = _tx(ALICE, 0, GWEI, GWEI)
    by_age = _tx(BOB, 0, GWEI, GWEI)
    pool.submit(_intent(by_block, expiry_block=4), 2, 0)
    pool.submit(_intent(by_age), 3, 0)
    assert pool.expired(4) == []
    assert [p.signed for p in pool.expired(5)] == [by_block]
    assert [p.signed for p in pool.expired(6)] == [by_block, by_age]


def test_queues_are_in_nonce_order_and_drop_from_cuts_the_tail() -> None:
    pool = Mempool()
    for nonce in (2, 0, 1):
        pool.submit(_intent(_tx(ALICE, nonce, GWEI, GWEI)), 1, 0)
    assert [p.nonce for p in pool.queues()[ALICE]] == [0, 1, 2]
    assert [p.nonce for p in pool.drop_from(ALICE, 1)] == [1, 2]
    assert [p.nonce for p in pool.queues()[ALICE]] == [0]


# -- with the builder and a chain ----------------------------------------------------------------


def _session() -> ChainSession:
    return ChainSession(seed=5, n_accounts=3)


def test_expired_tx_drops_later_nonces_and_the_nonce_is_reissued() -> None:
    session = _session()
    builder = BlockBuilder(session)
    sender, to = session.accounts[0].address, session.accounts[1].address
    base_fee = builder.base_fee_wei()
    # Nonce 0 bids under the base fee, so it waits; nonce 1 waits behind it.
    stuck = session.sign(sender, to, b"", 21_000, base_fee - 1, 0)
    behind = session.sign(sender, to, b"", 21_000, 10 * base_fee, GWEI)
    first_block = builder.next_block_number()
    builder.submit(Submission(stuck, "trader", "stuck", expiry_block=first_block))
    builder.submit(Submission(behind, "trader", "behind"))
    result = builder.build_block()
    assert result.records == ()
    assert result.waiting == ((f"0x{stuck.tx_hash.hex()}", "fee_cap_below_base_fee"),)
    result = builder.build_block()
    assert [(d.label, d.reason, d.dropped_block) for d in result.dropped] == [
        ("stuck", "expired", first_block + 1),
        ("behind", "nonce_gap", first_block + 1),
    ]
    assert len(builder.mempool) == 0
    again = session.sign(sender, to, b"", 21_000, 10 * base_fee, GWEI)
    assert again.nonce == 0  # the dropped nonces are issued again
    builder.submit(Submission(again, "trader", "again"))
    (record,) = builder.build_block().records
    assert (record.nonce, record.label, record.status) == (0, "again", 1)


def test_replace_by_fee_through_the_builder() -> None:
    session = _session()
    builder = BlockBuilder(session, max_pending_blocks=5)
    sender, to = session.accounts[0].address, session.accounts[1].address
    base_fee = builder.base_fee_wei()
    old = session.sign(sender, to, b"", 21_000, 10 * base_fee, GWEI)
    builder.submit(Submission(old, "liquidator", "liquidate:x"))
    new = session.resign(old, 11 * base_fee, 2 * GWEI)
    assert new.nonce == old.nonce
    assert builder.submit(Submission(new, "liquidator", "liquidate:x")).reason == "replaced"
    underpriced = session.resign(new, 12 * base_fee, 2 * GWEI + 1)
    assert not builder.submit(Submission(underpriced, "liquidator", "x")).accepted
    result = builder.build_block()
    assert [r.tx_hash for r in result.records] == [f"0x{new.tx_hash.hex()}"]
    assert result.records[0].priority_fee_per_gas_wei == 2 * GWEI
    assert [(d.tx_hash, d.reason) for d in result.dropped] == [
        (f"0x{old.tx_hash.hex()}", "replaced"),
        (f"0x{underpriced.tx_hash.hex()}", "underpriced_replacement"),
    ]
    assert session.sign(sender, to, b"", 21_000, 10 * base_fee, GWEI).nonce == 1


def test_unsubmitted_latest_nonce_can_be_released() -> None:
    session = _session()
    sender, to = session.accounts[0].address, session.accounts[1].address
    first = session.sign(sender, to, b"", 21_000, GWEI, 0)
    second = session.sign(sender, to, b"", 21_000, GWEI, 0)
    with pytest.raises(ValueError, match="latest issued"):
        session.release_nonce(first)
    session.release_nonce(second)
    assert session.sign(sender, to, b"", 21_000, GWEI, 0).nonce == 1  # reissued
