"""The fee market: EIP-1559 base fee over total demand, and exogenous background demand.

Total demand of a block is the gas our transactions used plus the background gas the block
carried. The base fee of the next block follows EIP-1559 exactly (target = gas limit / 2, at most
1/8 = 12.5% change per block, integer arithmetic as in the execution specs and py-evm).

Background demand is gas that others want in a block (not executed on our chain). Each block it
is a list of ``BackgroundBid``: an amount of gas, the priority fee those bidders pay per gas, and
optionally the highest fee they accept (above it they stay away, which makes demand elastic).
The builder interleaves bids with our transactions by priority fee: background gas bidding at
least as much as one of our transactions takes its space first (ties go to the background).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sim.chain.backend import BlockHead
from sim.chain.eip1559 import next_base_fee_wei


@dataclass(frozen=True)
class BackgroundBid:
    """Gas others want in one block, the priority fee they pay, their fee cap (None: any)."""

    gas: int
    priority_fee_wei: int
    max_fee_wei: int | None = None

    def __post_init__(self) -> None:
        if self.gas < 0 or self.priority_fee_wei < 0:
            raise ValueError(f"background bid needs gas >= 0 and priority fee >= 0: {self}")
        if self.max_fee_wei is not None and self.max_fee_wei < 0:
            raise ValueError(f"background bid fee cap must be >= 0: {self}")

    def active_at(self, base_fee_wei: int) -> bool:
        """Whether these bidders still want in at this base fee."""
        return self.max_fee_wei is None or self.max_fee_wei >= base_fee_wei


# (step, base fee of the block in wei) -> the background bids of that block. ``step`` counts
# the blocks built by the block builder, from 0.
BackgroundDemand = Callable[[int, int], Sequence[BackgroundBid]]


def no_background(_step: int, _base_fee_wei: int) -> tuple[BackgroundBid, ...]:
    """No demand but ours."""
    return ()


class FeeMarket:
    """The modelled base fee of each block: EIP-1559 over our gas plus background gas.

    ``start_base_fee_wei`` (optional) is the base fee of the first block priced by this market,
    e.g. to start a run at a scenario's base fee after set-up blocks; later blocks follow
    EIP-1559 from the chain head. ``first_price``: the pre-London market, base fee always 0
    (every transaction pays its own gas price, the priority fee).
    """

    def __init__(self, start_base_fee_wei: int | None = None, *, first_price: bool = False) -> None:
        if start_base_fee_wei is not None and start_base_fee_wei < 0:
            raise ValueError(f"start_base_fee_wei must be >= 0, got {start_base_fee_wei}")
        self._start_base_fee_wei = start_base_fee_wei
        self.first_price = first_price
        self._background_gas: tuple[int, int] | None = None  # (block number, gas)

    def record(self, block_number: int, background_gas_used: int) -> None:
        """Remember the background gas a mined block carried."""
        self._background_gas = (block_number, background_gas_used)

    def background_gas_of(self, block_number: int) -> int:
        if self._background_gas is not None and self._background_gas[0] == block_number:
            return self._background_gas[1]
        return 0

    def base_fee_for_next(self, head: BlockHead) -> int:
        """Base fee of the block after ``head``."""
        if self.first_price:
            return 0
        if self._background_gas is None and self._start_base_fee_wei is not None:
            return self._start_base_fee_wei
        total = head.gas_used + self.background_gas_of(head.number)
        return next_base_fee_wei(head.base_fee_wei, total, head.gas_limit)
