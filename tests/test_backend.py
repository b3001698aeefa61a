"""The chain session and the py-evm backend: mining, fees, reverts, determinism, views."""

from __future__ import annotations

import pytest
from eth_account import Account

from sim.chain.accounts import derive_accounts
from sim.chain.backend import CallReverted, ChainError, GenesisConfig, make_backend
from sim.chain.eip1559 import next_base_fee_wei
from sim.chain.session import ChainSession, TxRevertedError
from sim.units import GWEI
from tests.evm_bytecode import STORE_RUNTIME, init_code, revert_runtime, selector, word

NOT_LIQUIDATABLE = selector("NotLiquidatable()")


@pytest.fixture
def session() -> ChainSession:
    return ChainSession(seed=7, n_accounts=4)


def _addresses(session: ChainSession) -> list[str]:
    return [a.address for a in session.accounts]


def _deploy_store(session: ChainSession) -> str:
    return session.deploy(session.accounts[0].address, init_code(STORE_RUNTIME), 200_000)


def _stored(session: ChainSession, store: str) -> int:
    return int.from_bytes(session.call(store, b""), "big")


# -- accounts and signing ----------------------------------------------------------------------


def test_accounts_are_deterministic_and_match_eth_account() -> None:
    first, again, other = derive_accounts(3, 5), derive_accounts(3, 5), derive_accounts(4, 5)
    assert first == again
    assert {a.address for a in first}.isdisjoint(a.address for a in other)
    for account in first:
        assert Account.from_key(account.private_key).address == account.address


def test_signed_transaction_recovers_to_its_sender(session: ChainSession) -> None:
    sender, to = _addresses(session)[:2]
    signed = session.sign(sender, to, b"\x01\x00", 30_000, 5 * GWEI, GWEI, value_wei=7)
    assert Account.recover_transaction(signed.raw) == sender
    assert (signed.nonce, signed.to, signed.value_wei) == (0, to, 7)
    assert session.sign(sender, to, b"", 21_000, GWEI, GWEI).nonce == 1


def test_sign_refuses_what_no_block_could_include(session: ChainSession) -> None:
    sender, to = _addresses(session)[:2]
    with pytest.raises(ValueError, match="intrinsic"):
        session.sign(sender, to, b"\x01", 21_000, GWEI, GWEI)
    with pytest.raises(ValueError, match="exceeds fee cap"):
        session.sign(sender, to, b"", 21_000, GWEI, 2 * GWEI)
    with pytest.raises(ValueError, match="block gas limit"):
        session.sign(sender, to, b"", 31_000_000, GWEI, GWEI)
    with pytest.raises(ValueError, match="not one of this session's accounts"):
        session.sign("0x" + "11" * 20, to, b"", 21_000, GWEI, GWEI)
    # refused transactions took no nonce: the next one signed is still nonce 0
    assert session.sign(sender, to, b"", 21_000, GWEI, GWEI).nonce == 0


# -- mining --------------------------------------------------------------------------------------


def test_block_has_requested_base_fee_and_sender_pays_base_plus_priority(
    session: ChainSession,
) -> None:
    store = _deploy_store(session)
    sender = _addresses(session)[1]
    before = session.balance(sender)
    signed = session.sign(sender, store, word(5), 60_000, 100 * GWEI, 3 * GWEI)
    block = session.mine([signed], base_fee_wei=37 * GWEI)
    (mined,) = block.txs
    assert block.base_fee_wei == 37 * GWEI
    assert session.w3.eth.get_block("latest")["baseFeePerGas"] == 37 * GWEI
    assert mined.effective_gas_price_wei == 40 * GWEI
    assert before - session.balance(sender) == mined.gas_used * 40 * GWEI
    assert session.w3.eth.get_balance(sender) == session.balance(sender)


def test_default_base_fee_is_the_chains_eip1559_value(session: ChainSession) -> None:
    head = session.head()
    block = session.mine([])
    assert block.base_fee_wei == next_base_fee_wei(head.base_fee_wei, 0, head.gas_limit)
    assert block.base_fee_wei == GWEI - GWEI // 8


def test_reverted_transaction_is_mined_and_pays_gas(session: ChainSession) -> None:
    reverter = session.deploy(
        session.accounts[0].address, init_code(revert_runtime(NOT_LIQUIDATABLE)), 200_000
    )
    sender = _addresses(session)[2]
    before = session.balance(sender)
    signed = session.sign(sender, reverter, b"", 50_000, 20 * GWEI, GWEI)
    block = session.mine([signed], base_fee_wei=10 * GWEI)
    (mined,) = block.txs
    assert mined.status == 0
    assert mined.failure == "Revert"
    assert mined.revert_data == NOT_LIQUIDATABLE
    assert mined.gas_used > 21_000
    assert before - session.balance(sender) == mined.gas_used * 11 * GWEI
    assert session.confirmed_nonce(sender) == 1
    receipt = session.w3.eth.get_transaction_receipt(signed.tx_hash)
    assert receipt["status"] == 0
    assert receipt["blockNumber"] == block.number


def test_several_transactions_from_one_sender_in_one_block(session: ChainSession) -> None:
    store = _deploy_store(session)
    sender = _addresses(session)[1]
    signed = [session.sign(sender, store, word(v), 60_000, 10 * GWEI, GWEI) for v in (1, 2, 3)]
    block = session.mine(signed)
    assert [(t.index, t.nonce, t.status) for t in block.txs] == [(0, 0, 1), (1, 1, 1), (2, 2, 1)]
    assert [t.tx_hash for t in block.txs] == [s.tx_hash for s in signed]
    assert _stored(session, store) == 3
    assert block.gas_used == sum(t.gas_used for t in block.txs)


def test_create_reports_contract_address_and_views_see_latest_state(
    session: ChainSession,
) -> None:
    store = _deploy_store(session)
    assert session.w3.eth.get_code(store)[:5] == STORE_RUNTIME[:5]
    session.transact(session.accounts[0].address, store, word(42), 60_000)
    assert _stored(session, store) == 42
    assert int.from_bytes(session.w3.eth.call({"to": store, "data": "0x"}), "big") == 42
    latest = session.w3.eth.get_block("latest")
    head = session.head()
    assert (latest["number"], latest["timestamp"], latest["hash"]) == (
        head.number,
        head.timestamp,
        head.block_hash,
    )


def test_block_times_advance_by_block_time() -> None:
    session = ChainSession(GenesisConfig(timestamp=1_000), seed=1, n_accounts=1, block_time_s=5)
    stamps = [session.mine([]).timestamp for _ in range(3)]
    assert stamps == [1_005, 1_010, 1_015]


def test_views_work_when_base_fee_is_high(session: ChainSession) -> None:
    store = _deploy_store(session)
    session.mine([], base_fee_wei=500 * GWEI)
    assert _stored(session, store) == 0
    assert int.from_bytes(session.w3.eth.call({"to": store, "data": "0x"}), "big") == 0


def test_views_never_change_state(session: ChainSession) -> None:
    store = _deploy_store(session)
    session.transact(session.accounts[0].address, store, word(7), 60_000)
    sender = _addresses(session)[1]
    assert session.call(store, word(99), sender=sender) == b""
    session.w3.eth.call({"to": store, "data": "0x" + word(98).hex()})
    assert _stored(session, store) == 7
    assert session.backend.nonce(sender) == 0


def test_call_revert_carries_revert_data(session: ChainSession) -> None:
    reverter = session.deploy(
        session.accounts[0].address, init_code(revert_runtime(NOT_LIQUIDATABLE)), 200_000
    )
    with pytest.raises(CallReverted) as caught:
        session.call(reverter, b"")
    assert caught.value.revert_data == NOT_LIQUIDATABLE


def test_transact_raises_on_revert_unless_told_not_to(session: ChainSession) -> None:
    reverter = session.deploy(
        session.accounts[0].address, init_code(revert_runtime(NOT_LIQUIDATABLE)), 200_000
    )
    sender = _addresses(session)[1]
    with pytest.raises(TxRevertedError, match="reverted"):
        session.transact(sender, reverter, b"", 50_000)
    assert session.transact(sender, reverter, b"", 50_000, require_success=False).status == 0


# -- invalid blocks ------------------------------------------------------------------------------


def test_protocol_invalid_transaction_names_the_tx_and_leaves_chain_unchanged(
    session: ChainSession,
) -> None:
    sender, to = _addresses(session)[:2]
    first = session.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    second = session.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    head = session.head()
    with pytest.raises(ChainError, match=f"0x{second.tx_hash.hex()}.*nonce"):
        session.mine([second])
    assert session.head() == head
    assert [t.nonce for t in session.mine([first, second]).txs] == [0, 1]


def test_fee_cap_below_base_fee_is_refused(session: ChainSession) -> None:
    sender, to = _addresses(session)[:2]
    cheap = session.sign(sender, to, b"", 21_000, 2 * GWEI, GWEI)
    with pytest.raises(ChainError, match="base fee"):
        session.mine([cheap], base_fee_wei=3 * GWEI)


def test_web3_cannot_send_or_mine_behind_the_builders_back(session: ChainSession) -> None:
    sender, to = _addresses(session)[:2]
    signed = session.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    with pytest.raises(ChainError, match="block builder"):
        session.w3.eth.send_raw_transaction(signed.raw)
    with pytest.raises(ChainError, match="explicit gas"):
        session.w3.eth.estimate_gas({"from": sender, "to": to})


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ChainError, match=r"unknown chain backend 'geth'.*pyevm, anvil"):
        make_backend("geth", GenesisConfig())


# -- determinism ---------------------------------------------------------------------------------


def _scripted_run(seed: int) -> list[object]:
    session = ChainSession(seed=seed, n_accounts=3)
    a, b, _ = _addresses(session)
    store = _deploy_store(session)
    blocks = [
        session.mine(
            [
                session.sign(a, store, word(9), 60_000, 50 * GWEI, 2 * GWEI),
                session.sign(b, b, b"", 21_000, 50 * GWEI, GWEI, value_wei=1),
            ],
            base_fee_wei=20 * GWEI,
        ),
        session.mine([]),
    ]
    return [session.head(), *blocks]


def test_same_seed_and_inputs_give_identical_blocks() -> None:
    first, second = _scripted_run(11), _scripted_run(11)
    assert first == second
    assert _scripted_run(12)[0] != first[0]
