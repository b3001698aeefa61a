"""What an agent is handed each step: a read-only view of what it may know.

* ``chain``: chain state as of the last mined block (:class:`sim.exchange.view.ChainView`:
  oracle answers, venue reserves, the account mirror, block time stamp);
* ``mempool``: the public mempool (the highest rival bid for a label);
* ``own_pending()``: its own pending transactions, as its wallet reports them;
* ``external_price_e8(market, latency_blocks)``: the external price as of its latency;
* ``fees``: the next block's base fee and the gas token's price;
* ``liquidatable`` and ``health_of``: accounts the mirror marks liquidatable, and one batch
  ``healthOf`` read of the chain as of the last block (what a liquidation bot's node answers).

Agents read it and never write to it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.intents import Pending
from sim.exchange.book import AccountState
from sim.exchange.view import ChainView
from sim.market.mempool import Mempool
from sim.scenario.pricepath import ExternalMarket


class MempoolWindow:
    """The public mempool as an agent sees it."""

    def __init__(self, mempool: Mempool):
        self._mempool = mempool

    def rival_bid_wei(self, label: str, me: str) -> int | None:
        """Highest priority fee of another sender's pending transaction with ``label``."""
        bids = [
            p.signed.max_priority_fee_per_gas_wei
            for p in self._mempool.pending()
            if p.submission.label == label and p.sender != me
        ]
        return max(bids) if bids else None


@dataclass(frozen=True)
class FeeEstimates:
    """Fee estimates for the next block (a wallet's "gas price" panel)."""

    next_base_fee_wei: int
    gas_free: bool  # run.gas_enabled = false: no fees are charged
    _gas_token_price_usd: Callable[[], float]
    _suggest_tip_wei: Callable[[float, int], int] = lambda _percentile, _blocks: 0

    def gas_token_price_usd(self) -> float:
        return self._gas_token_price_usd()

    def suggested_tip_wei(self, percentile: float = 60, blocks: int = 20) -> int:
        """The priority fee a wallet suggests from the last ``blocks`` blocks (default 20, as
        geth's gas price oracle: the ``percentile`` of the cheapest tips that got in; see
        :mod:`sim.market.fee_history`). Pre-London (``chain.fee_market = "first_price"``) it
        is the gas price. 0 without gas."""
        return 0 if self.gas_free else self._suggest_tip_wei(percentile, blocks)

    def gas_cost_usd(self, gas_used: int, priority_fee_wei: int) -> float:
        """What ``gas_used`` costs at the next base fee plus ``priority_fee_wei``, in USD."""
        if self.gas_free:
            return 0.0
        wei_per_gas = self.next_base_fee_wei + priority_fee_wei
        return gas_used * wei_per_gas / 1e18 * self.gas_token_price_usd()


@dataclass(frozen=True)
class AgentView:
    """One agent's observation in one step."""

    step: int  # index of the block being built (0-based)
    block_time_s: int
    chain: ChainView
    mempool: MempoolWindow
    fees: FeeEstimates
    liquidatable: Sequence[AccountState]
    _external: ExternalMarket
    _health_of: Callable[[Sequence[AccountState]], list[tuple[AccountState, int]]]
    _own_pending: Callable[[], tuple[Pending, ...]]

    def external_price_e8(self, market: int, latency_blocks: int = 0) -> int:
        """The external price of ``market`` as of ``latency_blocks`` ago."""
        return self._external.price_e8(market, max(0, self.step - latency_blocks))

    def own_pending(self) -> tuple[Pending, ...]:
        """Our transactions in the mempool, oldest first."""
        return self._own_pending()

    def health_of(self, candidates: Sequence[AccountState]) -> list[tuple[AccountState, int]]:
        """The candidates the chain says are liquidatable, with their equity units."""
        return self._health_of(candidates)
