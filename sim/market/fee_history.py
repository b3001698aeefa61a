"""Fee history: what recent blocks paid, and the priority fee a wallet suggests from it.

A wallet does not know the mempool's clearing price; it estimates a tip from the cheapest
transactions that got into recent blocks, as geth's gas price oracle does (``eth_gasPrice`` /
``eth_maxPriorityFeePerGas``: the ``percentile`` (default 60) of the lowest tips sampled from
each of the last ``blocks`` (default 20) blocks; blocks with no transactions contribute the
oracle's floor). Pre-London (first-price auction, base fee 0) the same estimate is the gas price.

Each block contributes the lowest effective priority fees of what it carried, ours and the
background's (by gas: background bids are gas at a tip, so a block whose last included tier paid
5 gwei reports 5 gwei). An estimate from the past lags a fee level that keeps rising: that lag is
how rescues and oracle updates priced by wallets get crowded out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

GETH_BLOCKS = 20  # geth --gpo.blocks default
MAX_BLOCKS = 200  # the longest window a wallet may read (traders.fee_history_blocks)
GETH_PERCENTILE = 60  # geth --gpo.percentile default
SAMPLES_PER_BLOCK = 3  # geth samples the 3 cheapest transactions of each block


@dataclass(frozen=True)
class BlockTips:
    """The lowest effective priority fees (wei per gas) included in one block, cheapest first;
    empty if the block carried nothing."""

    number: int
    lowest_tips_wei: tuple[int, ...]
    gas_used_fraction: float  # (ours + background) / gas limit


def lowest_tips(tips_and_gas: Sequence[tuple[int, int]], samples: int = SAMPLES_PER_BLOCK):
    """The ``samples`` cheapest tips among ``(tip_wei, gas)`` entries with gas > 0."""
    return tuple(sorted(tip for tip, gas in tips_and_gas if gas > 0)[:samples])


class FeeHistory:
    """The last ``blocks`` blocks' cheapest tips; ``suggest_tip_wei`` is a wallet's estimate
    over a window of them."""

    def __init__(self, blocks: int = MAX_BLOCKS, floor_tip_wei: int = 0):
        if blocks < 1:
            raise ValueError(f"fee history needs at least one block, got {blocks}")
        self.floor_tip_wei = floor_tip_wei
        self._blocks: deque[BlockTips] = deque(maxlen=blocks)

    def record(self, tips: BlockTips) -> None:
        self._blocks.append(tips)

    @property
    def last(self) -> BlockTips | None:
        return self._blocks[-1] if self._blocks else None

    def suggest_tip_wei(
        self, percentile: float = GETH_PERCENTILE, blocks: int | None = GETH_BLOCKS
    ) -> int:
        """The ``percentile`` (0-100) of the sampled cheapest tips of the last ``blocks``
        blocks (geth's 20 by default; None: all it keeps), at least the floor; the floor
        without history."""
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        recent = list(self._blocks)[-blocks:] if blocks else list(self._blocks)
        samples = sorted(
            tip for block in recent for tip in (block.lowest_tips_wei or (self.floor_tip_wei,))
        )
        if not samples:
            return self.floor_tip_wei
        k = min(len(samples) - 1, int(len(samples) * percentile / 100))
        return max(self.floor_tip_wei, samples[k])
