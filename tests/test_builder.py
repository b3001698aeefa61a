"""Block building: fee ordering, nonce order, gas-limit spill-over, funds, background, ties."""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.chain.backend import GenesisConfig
from sim.chain.records import ErrorDecoder
from sim.chain.session import ChainSession, SignedTx
from sim.market.builder import BlockBuilder, Selection, select_transactions
from sim.market.feemarket import BackgroundBid
from sim.market.mempool import Mempool, Submission
from sim.units import GWEI
from tests.evm_bytecode import STORE_RUNTIME, init_code, revert_runtime, selector, word

BASE_FEE = 10 * GWEI
A, B, C = ("0x" + c * 40 for c in "abc")
RICH = 10**30


def _tx(
    sender: str, nonce: int, priority: int, *, max_fee: int = 100 * GWEI, gas: int = 50_000
) -> SignedTx:
    tx_hash = keccak(f"{sender}/{nonce}/{priority}/{max_fee}/{gas}".encode())
    return SignedTx(b"", tx_hash, sender, nonce, A, gas, max_fee, priority, 0)


def _select(
    txs: Sequence[SignedTx],
    *,
    gas_limit: int = 30_000_000,
    balances: dict[str, int] | None = None,
    background: Sequence[BackgroundBid] = (),
    chain_nonces: dict[str, int] | None = None,
) -> Selection:
    pool = Mempool()
    for tx in txs:
        pool.submit(Submission(tx, "trader"), 1, 0)
    return select_transactions(
        pool.queues(),
        chain_nonce=lambda s: (chain_nonces or {}).get(s, 0),
        balance_wei=lambda s: (balances or {}).get(s, RICH),
        base_fee_wei=BASE_FEE,
        gas_limit=gas_limit,
        background=background,
    )


def _order(selection: Selection) -> list[tuple[str, int]]:
    return [(p.sender, p.nonce) for p in selection.chosen]


def test_orders_by_priority_fee() -> None:
    selection = _select([_tx(A, 0, 1 * GWEI), _tx(B, 0, 5 * GWEI), _tx(C, 0, 3 * GWEI)])
    assert _order(selection) == [(B, 0), (C, 0), (A, 0)]


def test_effective_priority_is_capped_by_fee_cap_minus_base_fee() -> None:
    capped = _tx(A, 0, 50 * GWEI, max_fee=BASE_FEE + 2 * GWEI)  # pays 2 gwei tip at most
    selection = _select([capped, _tx(B, 0, 3 * GWEI)])
    assert _order(selection) == [(B, 0), (A, 0)]


def test_keeps_each_senders_nonce_order() -> None:
    txs = [_tx(A, 1, 100 * GWEI, max_fee=200 * GWEI), _tx(A, 0, 1 * GWEI), _tx(B, 0, 50 * GWEI)]
    assert _order(_select(txs)) == [(B, 0), (A, 0), (A, 1)]


def test_sender_with_a_nonce_gap_waits() -> None:
    selection = _select([_tx(A, 1, GWEI), _tx(B, 0, GWEI)])
    assert _order(selection) == [(B, 0)]
    assert [(p.nonce, why) for p, why in selection.waiting] == [(1, "nonce_gap")]


def test_nonce_already_used_on_chain_is_stale() -> None:
    selection = _select([_tx(A, 0, GWEI), _tx(A, 1, GWEI)], chain_nonces={A: 1})
    assert _order(selection) == [(A, 1)]
    assert [p.nonce for p in selection.stale] == [0]


def test_packs_by_gas_limit_and_leaves_the_rest() -> None:
    txs = [_tx(A, 0, 5 * GWEI, gas=60_000), _tx(B, 0, 4 * GWEI, gas=60_000)]
    txs.append(_tx(C, 0, 3 * GWEI, gas=30_000))
    selection = _select(txs, gas_limit=100_000)
    assert _order(selection) == [(A, 0), (C, 0)]
    assert [(p.sender, why) for p, why in selection.waiting] == [(B, "no_space")]


def test_fee_cap_below_base_fee_waits() -> None:
    selection = _select([_tx(A, 0, GWEI, max_fee=BASE_FEE - 1), _tx(B, 0, GWEI)])
    assert _order(selection) == [(B, 0)]
    assert [why for _, why in selection.waiting] == ["fee_cap_below_base_fee"]


def test_balance_is_tracked_within_the_block() -> None:
    one_tx = 50_000 * 100 * GWEI
    selection = _select([_tx(A, 0, GWEI), _tx(A, 1, GWEI)], balances={A: one_tx + one_tx // 2})
    assert _order(selection) == [(A, 0)]
    assert [(p.nonce, why) for p, why in selection.waiting] == [(1, "insufficient_funds")]


def test_background_outbids_lower_priority_fees_for_space() -> None:
    background = [BackgroundBid(gas=60_000, priority_fee_wei=4 * GWEI)]
    txs = [_tx(A, 0, 5 * GWEI, gas=30_000), _tx(B, 0, 4 * GWEI, gas=30_000)]
    selection = _select(txs, gas_limit=100_000, background=background)
    # A outbids the background; the background wins the tie with B and B no longer fits.
    assert _order(selection) == [(A, 0)]
    assert selection.background_gas == 60_000
    assert [(p.sender, why) for p, why in selection.waiting] == [(B, "no_space")]


def test_background_priced_out_by_base_fee_takes_no_space() -> None:
    background = [BackgroundBid(gas=100_000, priority_fee_wei=9 * GWEI, max_fee_wei=BASE_FEE - 1)]
    selection = _select([_tx(A, 0, GWEI)], gas_limit=100_000, background=background)
    assert _order(selection) == [(A, 0)]
    assert (selection.background_gas, selection.background_demand_gas) == (0, 0)


def test_equal_fees_are_ordered_by_arrival() -> None:
    txs = [_tx(C, 0, 2 * GWEI), _tx(A, 0, 2 * GWEI), _tx(B, 0, 2 * GWEI)]
    assert _order(_select(txs)) == [(C, 0), (A, 0), (B, 0)]
    assert _order(_select(list(reversed(txs)))) == [(B, 0), (A, 0), (C, 0)]


# -- on a chain ----------------------------------------------------------------------------------


def _market(gas_limit: int = 30_000_000) -> tuple[ChainSession, BlockBuilder, str, str]:
    session = ChainSession(GenesisConfig(block_gas_limit=gas_limit), seed=9, n_accounts=6)
    owner = session.accounts[0].address
    store = session.deploy(owner, init_code(STORE_RUNTIME), 200_000)
    reverter = session.deploy(
        owner, init_code(revert_runtime(selector("TooLate(uint256)"))), 200_000
    )
    errors = ErrorDecoder(
        [{"type": "error", "name": "TooLate", "inputs": [{"name": "x", "type": "uint256"}]}]
    )
    return session, BlockBuilder(session, errors=errors), store, reverter


def test_spill_over_to_the_next_block_with_records() -> None:
    session, builder, store, _ = _market(gas_limit=200_000)
    fee = builder.base_fee_wei() + 10 * GWEI
    senders = [a.address for a in session.accounts[1:5]]
    for i, sender in enumerate(senders):
        signed = session.sign(sender, store, word(i + 1), 60_000, fee, GWEI * (4 - i))
        builder.submit(Submission(signed, "trader", f"store:{i}"))
    first, second = builder.build_block(), builder.build_block()
    assert [r.label for r in first.records] == ["store:0", "store:1", "store:2"]
    assert [r.label for r in second.records] == ["store:3"]
    assert [r.inclusion_delay_blocks for r in first.records + second.records] == [0, 0, 0, 1]
    assert (first.backlog, second.backlog) == (1, 0)
    record = second.records[0]
    assert record.sender_kind == "trader"
    assert record.block_number == second.block.number
    assert record.fee_paid_wei == record.gas_used * record.effective_gas_price_wei
    assert record.effective_gas_price_wei == record.base_fee_wei + record.priority_fee_per_gas_wei


def test_reverted_tx_gets_a_decoded_record() -> None:
    session, builder, _, reverter = _market()
    sender = session.accounts[1].address
    signed = session.sign(sender, reverter, b"", 60_000, 4 * builder.base_fee_wei(), GWEI)
    builder.submit(Submission(signed, "liquidator", "liquidate:0xabc/1"))
    (record,) = builder.build_block().records
    assert (record.status, record.revert_reason, record.failure) == (0, "TooLate", "Revert")
    assert record.gas_used > 21_000
    assert record.fee_paid_wei > 0


def _replay() -> tuple[list[object], list[bytes]]:
    session, builder, store, reverter = _market(gas_limit=400_000)
    fee = 5 * builder.base_fee_wei()
    records: list[object] = []
    hashes = []
    for block in range(3):
        for i, account in enumerate(session.accounts[1:]):
            target = reverter if (block + i) % 3 == 0 else store
            signed = session.sign(account.address, target, word(block), 60_000, fee, GWEI)
            builder.submit(Submission(signed, "trader", f"{block}/{i}"))
        result = builder.build_block()
        records += [*result.records, *result.dropped]
        hashes.append(result.block.block_hash)
    return records, hashes


def test_same_inputs_give_identical_records_and_hashes() -> None:
    assert _replay() == _replay()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # sender
            st.integers(1, 20),  # priority fee, gwei
            st.integers(5, 30),  # fee cap, gwei
            st.integers(21_000, 90_000),  # gas limit
        ),
        max_size=25,
    ),
    st.integers(0, 150_000),  # background gas
    st.integers(0, 20),  # background priority fee, gwei
)
def test_selection_always_yields_a_valid_block(
    specs: list[tuple[int, int, int, int]], background_gas: int, background_tip: int
) -> None:
    senders = [A, B, C, "0x" + "d" * 40]
    next_nonce = dict.fromkeys(senders, 0)
    txs = []
    for who, tip, cap, gas in specs:
        sender = senders[who]
        txs.append(_tx(sender, next_nonce[sender], tip * GWEI, max_fee=cap * GWEI, gas=gas))
        next_nonce[sender] += 1
    balances = dict.fromkeys(senders, 3 * 60_000 * 30 * GWEI)
    bids = [BackgroundBid(background_gas, background_tip * GWEI)]
    selection = _select(txs, gas_limit=300_000, balances=balances, background=bids)
    chosen = selection.chosen
    assert sum(p.signed.gas_limit for p in chosen) + selection.background_gas <= 300_000
    spent = dict.fromkeys(senders, 0)
    expected = dict.fromkeys(senders, 0)
    for entry in chosen:
        assert entry.nonce == expected[entry.sender]
        expected[entry.sender] += 1
        assert entry.signed.max_fee_per_gas_wei >= BASE_FEE
        spent[entry.sender] += entry.signed.max_cost_wei()
        assert spent[entry.sender] <= balances[entry.sender]
    assert len({p.tx_hash for p in chosen}) == len(chosen)
