"""EIP-1559 base fee over total demand (ours + background), and background demand inputs."""

from __future__ import annotations

from types import SimpleNamespace

from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from hypothesis import given
from hypothesis import strategies as st

from sim.chain.backend import BlockHead
from sim.chain.session import ChainSession
from sim.market.builder import BlockBuilder
from sim.market.feemarket import (
    BackgroundBid,
    FeeMarket,
    next_base_fee_wei,
)
from sim.units import GWEI

LIMIT = 30_000_000


def test_full_block_raises_base_fee_by_one_eighth() -> None:
    assert next_base_fee_wei(8 * GWEI, LIMIT, LIMIT) == 9 * GWEI


def test_empty_block_lowers_base_fee_by_one_eighth() -> None:
    assert next_base_fee_wei(8 * GWEI, 0, LIMIT) == 7 * GWEI


def test_block_at_target_keeps_base_fee() -> None:
    assert next_base_fee_wei(8 * GWEI, LIMIT // 2, LIMIT) == 8 * GWEI


def test_tiny_overuse_still_raises_by_at_least_one_wei() -> None:
    assert next_base_fee_wei(7, LIMIT // 2 + 1, LIMIT) == 8


@given(
    base_fee=st.integers(0, 10**15),
    gas_used=st.integers(0, LIMIT),
    gas_limit=st.integers(5_000, 60_000_000),
)
def test_formula_matches_py_evm(base_fee: int, gas_used: int, gas_limit: int) -> None:
    gas_used = min(gas_used, gas_limit)
    parent = SimpleNamespace(base_fee_per_gas=base_fee, gas_used=gas_used, gas_limit=gas_limit)
    assert next_base_fee_wei(base_fee, gas_used, gas_limit) == (
        calculate_expected_base_fee_per_gas(parent)
    )


def _head(number: int, base_fee: int, gas_used: int) -> BlockHead:
    return BlockHead(number, 0, base_fee, gas_used, LIMIT, b"")


def test_fee_market_counts_background_gas_of_the_head() -> None:
    market = FeeMarket()
    market.record(5, LIMIT // 2)
    assert market.base_fee_for_next(_head(5, 8 * GWEI, LIMIT // 2)) == 9 * GWEI
    assert market.base_fee_for_next(_head(6, 8 * GWEI, LIMIT // 2)) == 8 * GWEI


def test_fee_market_start_value_applies_to_the_first_block_only() -> None:
    market = FeeMarket(start_base_fee_wei=30 * GWEI)
    assert market.base_fee_for_next(_head(9, GWEI, 0)) == 30 * GWEI
    market.record(10, 0)
    assert market.base_fee_for_next(_head(10, 30 * GWEI, 0)) == 30 * GWEI - 30 * GWEI // 8


def _chain_base_fees(background: object, blocks: int) -> list[int]:
    session = ChainSession(seed=2, n_accounts=1)
    builder = BlockBuilder(session, background=background)
    return [builder.build_block().block.base_fee_wei for _ in range(blocks)]


def _constant(bid: BackgroundBid):
    """The same background bid in every block."""
    return lambda _step, _base_fee_wei: (bid,)


def test_base_fee_rises_over_consecutive_full_blocks_on_chain() -> None:
    fees = _chain_base_fees(_constant(BackgroundBid(LIMIT, GWEI)), 6)
    expected = [GWEI - GWEI // 8]  # genesis block carried no demand
    for _ in range(5):
        expected.append(expected[-1] + expected[-1] // 8)
    assert fees == expected


def test_base_fee_falls_over_consecutive_empty_blocks_on_chain() -> None:
    fees = _chain_base_fees(_constant(BackgroundBid(0, 0)), 6)
    expected = [GWEI - GWEI // 8]
    for _ in range(5):
        expected.append(expected[-1] - expected[-1] // 8)
    assert fees == expected


def test_background_with_a_fee_cap_leaves_when_base_fee_passes_it() -> None:
    bid = BackgroundBid(gas=LIMIT, priority_fee_wei=GWEI, max_fee_wei=GWEI)
    session = ChainSession(seed=2, n_accounts=1)
    builder = BlockBuilder(session, background=lambda _step, _fee: (bid,))
    results = [builder.build_block() for _ in range(4)]
    fees = [r.base_fee_wei for r in results]
    used = [r.background_gas_used for r in results]
    # 0.875 gwei: bidders come, fill the block; 0.984 gwei: still under their cap, fill it;
    # 1.107 gwei: priced out, the block is empty and the fee falls back under the cap.
    assert used == [LIMIT, LIMIT, 0, LIMIT]
    assert fees[1] == fees[0] + fees[0] // 8
    assert fees[2] == fees[1] + fees[1] // 8 > GWEI
    assert fees[3] == fees[2] - fees[2] // 8 <= GWEI
