"""Background demand: the scenario's exogenous demand for block space (other people's traffic).

Not ours to execute, and not an agent (it decides nothing): it takes block space and sets the
base fee with our transactions (see docs/block-market.md). Each block it bids ``gas`` at a
priority fee; our transactions that bid less wait behind it.
"""

from __future__ import annotations

from typing import Protocol

from sim.market.feemarket import BackgroundBid


class DemandProfile(Protocol):
    """Background gas demanded in a block: ``at(step, base_fee_wei) -> (gas, priority_fee_wei)``
    (``sim.scenario.pricepath.BackgroundProfile`` is the scenario's)."""

    def at(self, step: int, base_fee_wei: int) -> tuple[int, int]: ...


class BackgroundDemand:
    """Supplies the block builder with each block's background bid (``None``: no demand)."""

    def __init__(self, profile: DemandProfile | None):
        self.profile = profile
        self.last_bid = BackgroundBid(0, 0)

    def __call__(self, step: int, base_fee_wei: int) -> tuple[BackgroundBid, ...]:
        if self.profile is None:
            return ()
        self.last_bid = BackgroundBid(*self.profile.at(step, base_fee_wei))
        return (self.last_bid,)
