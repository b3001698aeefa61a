"""The anvil backend: the same blocks as py-evm, atomic refusals, its process, fork mode.

Every test here runs a real anvil (``npm ci`` installs it; skipped, with the reason, only when
the binary is missing). The whole-run equivalence is in ``test_anvil_equivalence.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sim.chain.anvil import AnvilBackend, AnvilDied, AnvilNotFound, anvil_binary
from sim.chain.backend import CallReverted, ChainError, GenesisConfig
from sim.chain.session import ChainSession
from sim.units import GWEI
from tests.anvil_support import needs_anvil
from tests.evm_bytecode import STORE_RUNTIME, init_code, revert_runtime, selector, word

pytestmark = needs_anvil

NOT_LIQUIDATABLE = selector("NotLiquidatable()")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def anvil():
    with ChainSession(seed=7, n_accounts=4, backend="anvil") as session:
        yield session


def _addresses(session: ChainSession) -> list[str]:
    return [a.address for a in session.accounts]


def _stored(session: ChainSession, store: str) -> int:
    return int.from_bytes(session.call(store, b""), "big")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(") ")[1].startswith("Z"))


# -- the same blocks as py-evm -------------------------------------------------------------------


def _scripted(session: ChainSession) -> list[tuple]:
    """A block of everything the simulation meets: a create, a success, a custom-error revert,
    an out-of-gas, two transactions of one sender, a value transfer; then what views see."""
    a, b, c, d = _addresses(session)
    store = session.deploy(a, init_code(STORE_RUNTIME), 200_000)
    reverter = session.deploy(a, init_code(revert_runtime(NOT_LIQUIDATABLE)), 200_000)
    txs = [
        session.sign(b, store, word(5), 60_000, 100 * GWEI, 3 * GWEI),
        session.sign(b, reverter, b"", 50_000, 100 * GWEI, GWEI),
        session.sign(c, store, word(6), 21_500, 100 * GWEI, GWEI),  # out of gas
        session.sign(d, None, init_code(STORE_RUNTIME), 200_000, 100 * GWEI, 0),
        session.sign(c, d, b"", 21_000, 100 * GWEI, 2 * GWEI, value_wei=12345),
    ]
    block = session.mine(txs, base_fee_wei=37 * GWEI)
    outcome = [
        (
            t.index,
            t.sender,
            t.nonce,
            t.status,
            t.gas_used,
            t.effective_gas_price_wei,
            t.logs,
            t.revert_data,
            t.contract_address,
            t.failure,
        )
        for t in block.txs
    ]
    head = session.head()
    views = (_stored(session, store), [session.balance(x) for x in (a, b, c, d)])
    return [
        *outcome,
        (block.number, block.timestamp, block.base_fee_wei, block.gas_used),
        views,
        head.number,
    ]


def test_a_block_gives_the_same_receipts_and_state_as_py_evm(anvil: ChainSession) -> None:
    reference = _scripted(ChainSession(seed=7, n_accounts=4))
    assert _scripted(anvil) == reference
    failures = [row[9] for row in reference[:5]]
    assert failures == ["", "Revert", "OutOfGas", "", ""]
    assert reference[1][7] == NOT_LIQUIDATABLE  # revert data of the custom error


def test_blocks_and_their_hashes_are_deterministic() -> None:
    def hashes() -> list[bytes]:
        with ChainSession(seed=3, n_accounts=4, backend="anvil") as session:
            _scripted(session)
            return [session.head().block_hash, session.w3.eth.get_block(1)["hash"]]

    assert hashes() == hashes()


def test_views_and_web3_read_the_latest_block(anvil: ChainSession) -> None:
    a = _addresses(anvil)[0]
    store = anvil.deploy(a, init_code(STORE_RUNTIME), 200_000)
    anvil.transact(a, store, word(42), 60_000)
    anvil.mine([], base_fee_wei=500 * GWEI)  # views pay no base fee
    assert _stored(anvil, store) == 42
    assert int.from_bytes(anvil.w3.eth.call({"to": store, "data": "0x"}), "big") == 42
    assert anvil.w3.eth.get_code(store)[:5] == STORE_RUNTIME[:5]
    latest = anvil.w3.eth.get_block("latest")
    head = anvil.head()
    assert (latest["number"], latest["timestamp"], latest["hash"], latest["baseFeePerGas"]) == (
        head.number,
        head.timestamp,
        head.block_hash,
        500 * GWEI,
    )
    assert anvil.w3.eth.get_balance(a) == anvil.balance(a)


def test_call_revert_carries_revert_data(anvil: ChainSession) -> None:
    reverter = anvil.deploy(
        anvil.accounts[0].address, init_code(revert_runtime(NOT_LIQUIDATABLE)), 200_000
    )
    with pytest.raises(CallReverted) as caught:
        anvil.call(reverter, b"")
    assert caught.value.revert_data == NOT_LIQUIDATABLE


def test_web3_cannot_send_or_mine_behind_the_builders_back(anvil: ChainSession) -> None:
    sender, to = _addresses(anvil)[:2]
    signed = anvil.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    with pytest.raises(ChainError, match="block builder"):
        anvil.w3.eth.send_raw_transaction(signed.raw)
    with pytest.raises(ChainError, match="explicit gas"):
        anvil.w3.eth.estimate_gas({"from": sender, "to": to})


# -- refusals leave the chain as it was ----------------------------------------------------------


def _pool(session: ChainSession) -> dict:
    return session.backend._rpc.request("txpool_status")


def test_invalid_transaction_refuses_the_block_and_leaves_the_chain_unchanged(
    anvil: ChainSession,
) -> None:
    sender, to = _addresses(anvil)[:2]
    first = anvil.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    second = anvil.sign(sender, to, b"", 21_000, 10 * GWEI, GWEI)
    head = anvil.head()
    with pytest.raises(ChainError, match=f"0x{second.tx_hash.hex()}.*nonce"):
        anvil.mine([second])  # nonce 1 before nonce 0: a gap, refused
    assert anvil.head() == head
    assert _pool(anvil) == {"pending": "0x0", "queued": "0x0"}
    cheap = anvil.sign(_addresses(anvil)[2], to, b"", 21_000, 2 * GWEI, GWEI)
    with pytest.raises(ChainError, match="base fee"):
        anvil.mine([first, cheap], base_fee_wei=3 * GWEI)
    assert anvil.head() == head
    assert _pool(anvil) == {"pending": "0x0", "queued": "0x0"}
    anvil.rewind_nonce(_addresses(anvil)[2], 0)
    assert [t.nonce for t in anvil.mine([first, second]).txs] == [0, 1]


def test_a_block_anvil_mines_differently_is_rolled_back(anvil: ChainSession) -> None:
    a, b, c, _ = _addresses(anvil)
    ours = anvil.sign(a, c, b"", 21_000, 10 * GWEI, GWEI, value_wei=1)
    intruder = anvil.sign(b, c, b"", 21_000, 10 * GWEI, GWEI, value_wei=1)
    backend = anvil.backend
    backend._rpc.request("eth_sendRawTransaction", "0x" + intruder.raw.hex())
    backend._check_pool = lambda *_args: None  # let the extra transaction through
    head, balance = anvil.head(), anvil.balance(c)
    with pytest.raises(ChainError, match=r"anvil mined a different block.*rolled back"):
        anvil.mine([ours])
    del backend._check_pool
    assert anvil.head() == head
    assert backend._rpc.request("eth_blockNumber") == hex(head.number)
    assert anvil.balance(c) == balance
    assert _pool(anvil) == {"pending": "0x0", "queued": "0x0"}
    assert [t.tx_hash for t in anvil.mine([ours]).txs] == [ours.tx_hash]


# -- the process ---------------------------------------------------------------------------------


def test_each_backend_owns_a_loopback_anvil_stopped_on_close() -> None:
    first = ChainSession(seed=1, n_accounts=1, backend="anvil")
    second = ChainSession(seed=1, n_accounts=1, backend="anvil")
    processes = [first.backend.process, second.backend.process]
    assert {p.host for p in processes} == {"127.0.0.1"}
    assert processes[0].port != processes[1].port
    assert all(_pid_alive(p.pid) for p in processes)
    first.close()
    first.close()  # idempotent
    assert not _pid_alive(processes[0].pid)
    assert not processes[0].workdir.exists()
    assert _pid_alive(processes[1].pid)
    second.close()
    assert not _pid_alive(processes[1].pid)


def test_a_dead_anvil_is_a_clear_error(anvil: ChainSession) -> None:
    process = anvil.backend.process
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(AnvilDied, match=r"anvil stopped during .*killed by SIGKILL"):
        anvil.mine([])


def test_anvil_dies_with_the_python_process_that_started_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal
        from sim.chain.session import ChainSession
        session = ChainSession(seed=1, n_accounts=1, backend="anvil")
        print(session.backend.process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up runs
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = int(child.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)


def test_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQSIM_ANVIL", "/nonexistent/anvil")
    with pytest.raises(AnvilNotFound, match="LIQSIM_ANVIL"):
        anvil_binary()
    monkeypatch.delenv("LIQSIM_ANVIL")
    monkeypatch.setattr("sim.chain.anvil.binary.REPO_ROOT", Path("/nonexistent"))
    monkeypatch.chdir("/")
    with pytest.raises(AnvilNotFound, match=r"npm ci.*make test"):
        anvil_binary()


def test_anvil_that_cannot_start_says_why() -> None:
    with pytest.raises(ChainError, match="anvil exited before it was ready"):
        AnvilBackend(GenesisConfig(), fork_url="http://127.0.0.1:1")  # nothing listens there


# -- fork mode -----------------------------------------------------------------------------------


def test_fork_reads_the_upstream_state_and_mines_on_its_own() -> None:
    with ChainSession(seed=21, n_accounts=2, backend="anvil") as upstream:
        owner = upstream.accounts[0].address
        store = upstream.deploy(owner, init_code(STORE_RUNTIME), 200_000)
        upstream.transact(owner, store, word(42), 60_000)
        up_head = upstream.head()
        with ChainSession(
            seed=22, n_accounts=2, backend="anvil", fork_url=upstream.backend.url
        ) as fork:
            assert fork.head().number == up_head.number
            assert _stored(fork, store) == 42  # the upstream's deployed state
            user = fork.accounts[0].address
            assert fork.balance(user) == 10**24  # liqsim's accounts are funded on the fork
            fork.transact(user, store, word(7), 60_000)
            assert _stored(fork, store) == 7
            assert fork.head().number == up_head.number + 1
        assert _stored(upstream, store) == 42  # the upstream is untouched
        assert upstream.head() == up_head


def test_fork_refuses_accounts_already_used_upstream() -> None:
    with ChainSession(seed=23, n_accounts=2, backend="anvil") as upstream:
        upstream.fund(upstream.accounts[1].address, 1)
        with pytest.raises(ChainError, match="has sent 1 transaction"):
            ChainSession(seed=23, n_accounts=2, backend="anvil", fork_url=upstream.backend.url)
