"""Benchmark: the block market (sign, mempool, builder, chain) against the bare EVM work.

Drives a realistic mix through the block market for a few hundred blocks of about 100
transactions each: trades (some with a limit price that makes them revert), deposits,
withdrawals (some refused by the margin check), oracle updates, and liquidation attempts (mostly
losing with ``AccountHealthy``), with background demand for block space. Then replays the very
same signed transactions, in the same blocks, with the same timestamps and base fees, on a fresh
identical chain with nothing but ``decode + MiningChain.mine_all`` per block (block by block,
alternating with the market so both see the same machine load), checks the block hashes are
identical, and prints both speeds and ``ratio: X`` (market tx/s over bare tx/s).

Calldata is ABI-encoded outside the timed sections (that is agent work); signing is timed (it
is part of the market).

    .venv/bin/python benchmarks/block_market.py [--blocks 200] [--txs 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from sim.chain.backend import GenesisConfig, PyEVMBackend, prevrandao
from sim.chain.session import ChainSession
from sim.exchange.client import System, SystemConfig, deploy_system, error_decoder
from sim.market.builder import BlockBuilder
from sim.market.feemarket import BackgroundBid
from sim.market.mempool import Submission
from sim.units import GWEI, USD

E18 = 10**18
N_TRADERS = 100
N_LIQUIDATORS = 10
FIRST_TRADER = 2  # accounts 0 and 1 are the deployer and the oracle reporter
BLOCK_GAS_LIMIT = 60_000_000


@dataclass(frozen=True)
class ConstantBackground:
    """The same background bid in every block."""

    gas: int
    priority_fee_wei: int
    max_fee_wei: int | None = None

    def __call__(self, _step: int, _base_fee_wei: int) -> tuple[BackgroundBid, ...]:
        return (BackgroundBid(self.gas, self.priority_fee_wei, self.max_fee_wei),)


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
                out.append(self._collateral("withdraw", 10, 15_000))
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
            moved = price * (1000 + self.rng.randint(-5, 5)) // 1000
            self.prices_e8[market] = moved
            orders.append(
                self._order(
                    "oracle",
                    f"report:{market}",
                    self.system.reporter,
                    self.system.feeds[market],
                    "report",
                    moved,
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


class BareChain:
    """A fresh identical chain that only decodes and ``mine_all``s the market's blocks."""

    def __init__(self, seed: int) -> None:
        session, *_ = build_world(seed)
        assert isinstance(session.backend, PyEVMBackend)
        self.chain = session.backend._chain  # the benchmark measures py-evm itself
        self.decode = self.chain.get_vm().get_transaction_builder().decode

    def mine(self, raws: list[bytes], timestamp: int, base_fee_wei: int) -> bytes:
        parent = self.chain.get_canonical_head()
        self.chain.header = self.chain.create_header_from_parent(parent).copy(
            timestamp=timestamp,
            base_fee_per_gas=base_fee_wei,
            mix_hash=prevrandao(parent.block_number + 1),
        )
        result, _, _ = self.chain.mine_all([self.decode(raw) for raw in raws])
        return result.imported_block.hash


@dataclass
class Totals:
    blocks: int = 0
    txs: int = 0
    reverted: int = 0
    market_s: float = 0.0
    bare_s: float = 0.0
    identical: bool = True


def run(blocks: int, txs: int, seed: int) -> Totals:
    """Build each block through the market, then mine the same block bare, alternately (so
    both see the same machine load)."""
    session, system, traders, liquidators = build_world(seed)
    bare = BareChain(seed)
    builder = BlockBuilder(session, background=BACKGROUND, errors=error_decoder())
    mix = MixGenerator(system, traders, liquidators, seed)
    raw_by_hash: dict[bytes, bytes] = {}
    totals = Totals()
    for _ in range(blocks):
        orders = mix.orders(txs)  # agent work, not timed
        start = time.perf_counter()
        base_fee = builder.base_fee_wei()
        for order in orders:
            fee_cap = 2 * base_fee + order.tip_wei
            signed = session.sign(
                order.sender, order.to, order.data, order.gas, fee_cap, order.tip_wei
            )
            raw_by_hash[signed.tx_hash] = signed.raw
            builder.submit(Submission(signed, order.kind, order.label))
        block = builder.build_block().block
        totals.market_s += time.perf_counter() - start

        raws = [raw_by_hash.pop(tx.tx_hash) for tx in block.txs]
        start = time.perf_counter()
        block_hash = bare.mine(raws, block.timestamp, block.base_fee_wei)
        totals.bare_s += time.perf_counter() - start

        totals.identical &= block_hash == block.block_hash
        totals.blocks += 1
        totals.txs += len(block.txs)
        totals.reverted += sum(1 for tx in block.txs if tx.status == 0)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs", type=int, default=100, help="orders per block")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    totals = run(args.blocks, args.txs, args.seed)
    n_blocks, n_txs, market_s, bare_s = totals.blocks, totals.txs, totals.market_s, totals.bare_s
    print(f"blocks: {n_blocks}  txs: {n_txs}  reverted: {totals.reverted}")
    print(
        f"block market: {n_txs / market_s:.0f} tx/s  {n_blocks / market_s:.2f} blocks/s  "
        f"({market_s:.1f} s: sign + mempool + build + mine + records)"
    )
    print(
        f"bare mine_all: {n_txs / bare_s:.0f} tx/s  {n_blocks / bare_s:.2f} blocks/s  "
        f"({bare_s:.1f} s: decode + mine_all, same blocks)"
    )
    print(f"same block hashes: {totals.identical}")
    print(f"ratio: {bare_s / market_s:.3f}")
    if not totals.identical:
        raise SystemExit("the bare replay did not reproduce the market's blocks")


if __name__ == "__main__":
    main()
