"""Benchmark: the block market (sign, mempool, builder, chain) against the bare EVM work.

Drives a realistic mix through the block market for a few hundred blocks of about 100
transactions each: trades (some with a limit price that makes them revert), deposits,
withdrawals (some refused by the margin check), oracle updates, and liquidation attempts (mostly
losing with ``AccountHealthy``), with background demand for block space. Then replays the very
same signed transactions, in the same blocks, with the same timestamps and base fees, on a fresh
identical chain with nothing but ``decode + MiningChain.mine_all`` per block, checks the block
hashes are identical, and prints both speeds and ``ratio: X`` (market tx/s over bare tx/s).

Calldata is ABI-encoded outside the timed sections (that is agent work); signing is timed (it
is part of the market).

    .venv/bin/python benchmarks/block_market.py [--blocks 200] [--txs 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.backend import GenesisConfig, PyEVMBackend, prevrandao  # noqa: E402
from sim.builder import BlockBuilder  # noqa: E402
from sim.chain import ChainSession  # noqa: E402
from sim.deploy import USD, System, SystemConfig, deploy_system, error_decoder  # noqa: E402
from sim.feemarket import ConstantBackground  # noqa: E402
from sim.mempool import TxIntent  # noqa: E402

GWEI = 10**9
E18 = 10**18
N_TRADERS = 100
N_LIQUIDATORS = 10
FIRST_TRADER = 2  # accounts 0 and 1 are the deployer and the oracle reporter
BLOCK_GAS_LIMIT = 60_000_000
BACKGROUND = ConstantBackground(gas=10_000_000, priority_fee_wei=GWEI)


@dataclass(frozen=True)
class Order:
    """One transaction an agent wants to send (calldata already encoded)."""

    kind: str
    label: str
    sender: str
    to: str
    data: bytes
    gas: int
    tip_wei: int


@dataclass(frozen=True)
class MinedRecord:
    """What the bare replay needs of a block built by the market."""

    raws: tuple[bytes, ...]
    timestamp: int
    base_fee_wei: int
    block_hash: bytes


def build_world(seed: int) -> tuple[ChainSession, System, list[str], list[str]]:
    """Deterministic chain with the system deployed and funded traders (not timed)."""
    session = ChainSession(
        GenesisConfig(block_gas_limit=BLOCK_GAS_LIMIT),
        seed=seed,
        n_accounts=FIRST_TRADER + N_TRADERS + N_LIQUIDATORS,
    )
    system = deploy_system(session, SystemConfig())
    accounts = [a.address for a in session.accounts]
    traders = accounts[FIRST_TRADER : FIRST_TRADER + N_TRADERS]
    liquidators = accounts[FIRST_TRADER + N_TRADERS :]
    calls = []
    for trader in traders:
        calls += system.fund_trader_calls(trader, 200_000 * USD)
        calls += system.open_account_calls(trader, 0, "cross", 0, 20_000 * USD)
    system.send_batch(calls)
    return session, system, traders, liquidators


class MixGenerator:
    """The per-block order flow, from a seeded RNG."""

    def __init__(self, system: System, traders: list[str], liquidators: list[str], seed: int):
        self.system = system
        self.traders = traders
        self.liquidators = liquidators
        self.rng = random.Random(seed)
        self.prices_e8 = [m.initial_price_e8 for m in system.config.markets]

    def orders(self, n: int) -> list[Order]:
        out = self._oracle_updates()
        while len(out) < n:
            roll = self.rng.random()
            if roll < 0.55:
                out.append(self._trade())
            elif roll < 0.75:
                out.append(self._collateral("deposit", 10, 1_000))
            elif roll < 0.87:
                out.append(self._collateral("withdraw", 10, 30_000))
            else:
                out.append(self._liquidation())
        return out

    def _order(self, kind: str, label: str, sender: str, contract, fn: str, *args, gas: int):
        data = self.system.call_data(contract, fn, *args)
        tip = self.rng.randint(1, 5) * GWEI
        return Order(kind, label, sender, contract.address, data, gas, tip)

    def _oracle_updates(self) -> list[Order]:
        orders = []
        for market, price in enumerate(self.prices_e8):
            if self.rng.random() < 0.5:
                continue
            price = price * (1000 + self.rng.randint(-5, 5)) // 1000
            self.prices_e8[market] = price
            orders.append(
                self._order(
                    "oracle",
                    f"report:{market}",
                    self.system.reporter,
                    self.system.feeds[market],
                    "report",
                    price,
                    gas=self.system.config.gas.report,
                )
            )
        return orders

    def _trade(self) -> Order:
        trader = self.rng.choice(self.traders)
        market = self.rng.randrange(len(self.prices_e8))
        scale = E18 // 10 if market == 0 else E18 // 300
        size = self.rng.choice((-1, 1)) * self.rng.randint(1, 10) * scale
        limit = 2**255 if size > 0 else 0
        if self.rng.random() < 0.08:  # a limit the venue cannot meet: SlippageExceeded
            limit = 1 if size > 0 else 2**200
        return self._order(
            "trader",
            f"trade:{market}",
            trader,
            self.system.exchange,
            "trade",
            0,
            market,
            size,
            limit,
            gas=self.system.config.gas.trade,
        )

    def _collateral(self, fn: str, low_usd: int, high_usd: int) -> Order:
        trader = self.rng.choice(self.traders)
        amount = self.rng.randint(low_usd, high_usd) * USD
        gas = getattr(self.system.config.gas, fn)
        return self._order("trader", fn, trader, self.system.exchange, fn, 0, amount, gas=gas)

    def _liquidation(self) -> Order:
        liquidator = self.rng.choice(self.liquidators)
        target = self.rng.choice(self.traders)
        return self._order(
            "liquidator",
            f"liquidate:{target}/0",
            liquidator,
            self.system.exchange,
            "liquidate",
            target,
            0,
            gas=self.system.config.gas.liquidate(2),
        )


def run_market(blocks: int, txs: int, seed: int) -> tuple[float, int, int, list[MinedRecord]]:
    session, system, traders, liquidators = build_world(seed)
    builder = BlockBuilder(session, background=BACKGROUND, errors=error_decoder())
    mix = MixGenerator(system, traders, liquidators, seed)
    raw_by_hash: dict[bytes, bytes] = {}
    mined: list[MinedRecord] = []
    n_txs = n_reverted = 0
    elapsed = 0.0
    for _ in range(blocks):
        orders = mix.orders(txs)  # agent work, not timed
        start = time.perf_counter()
        base_fee = builder.base_fee_wei()
        for order in orders:
            signed = session.sign(
                order.sender, order.to, order.data, order.gas, 2 * base_fee + order.tip_wei,
                order.tip_wei,
            )
            raw_by_hash[signed.tx_hash] = signed.raw
            builder.submit(TxIntent(signed, order.kind, order.label))
        result = builder.build_block()
        elapsed += time.perf_counter() - start
        block = result.block
        n_txs += len(block.txs)
        n_reverted += sum(1 for tx in block.txs if tx.status == 0)
        mined.append(
            MinedRecord(
                tuple(raw_by_hash.pop(tx.tx_hash) for tx in block.txs),
                block.timestamp,
                block.base_fee_wei,
                block.block_hash,
            )
        )
    return elapsed, n_txs, n_reverted, mined


def run_bare(seed: int, mined: list[MinedRecord]) -> tuple[float, bool]:
    """The same blocks with decode + mine_all only, on a fresh identical chain."""
    session, *_ = build_world(seed)
    backend = session.backend
    assert isinstance(backend, PyEVMBackend)
    chain = backend._chain  # the benchmark measures py-evm itself
    decode = chain.get_vm().get_transaction_builder().decode
    identical = True
    elapsed = 0.0
    for record in mined:
        start = time.perf_counter()
        parent = chain.get_canonical_head()
        chain.header = chain.create_header_from_parent(parent).copy(
            timestamp=record.timestamp,
            base_fee_per_gas=record.base_fee_wei,
            mix_hash=prevrandao(parent.block_number + 1),
        )
        result, _, _ = chain.mine_all([decode(raw) for raw in record.raws])
        elapsed += time.perf_counter() - start
        identical &= result.imported_block.hash == record.block_hash
    return elapsed, identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs", type=int, default=100, help="orders per block")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    market_s, n_txs, n_reverted, mined = run_market(args.blocks, args.txs, args.seed)
    bare_s, identical = run_bare(args.seed, mined)
    n_blocks = len(mined)
    print(f"blocks: {n_blocks}  txs: {n_txs}  reverted: {n_reverted}")
    print(
        f"block market: {n_txs / market_s:.0f} tx/s  {n_blocks / market_s:.2f} blocks/s  "
        f"({market_s:.1f} s: sign + mempool + build + mine + records)"
    )
    print(
        f"bare mine_all: {n_txs / bare_s:.0f} tx/s  {n_blocks / bare_s:.2f} blocks/s  "
        f"({bare_s:.1f} s: decode + mine_all, same blocks)"
    )
    print(f"same block hashes: {identical}")
    print(f"ratio: {bare_s / market_s:.3f}")
    if not identical:
        raise SystemExit("the bare replay did not reproduce the market's blocks")


if __name__ == "__main__":
    main()
