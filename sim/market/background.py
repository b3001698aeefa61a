"""Background demand: the scenario's exogenous demand for block space (other people's traffic).

Not ours to execute: it takes block space and sets the base fee with our transactions (see
docs/block-market.md). Each block it bids ``gas`` at a priority fee; our transactions that bid
less wait behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa

from sim.market.feemarket import BackgroundBid
from sim.scenario.pricepath import BackgroundProfile

if TYPE_CHECKING:
    from sim.model import LiqSimModel


class BackgroundDemand(mesa.Agent):
    """Supplies the block builder with each block's background bid."""

    kind = "background"

    def __init__(self, model: LiqSimModel, enabled: bool):
        super().__init__(model)
        self.profile = BackgroundProfile.from_scenario(model.scenario) if enabled else None
        self.last_bid = BackgroundBid(0, 0)

    def __call__(self, step: int, base_fee_wei: int) -> tuple[BackgroundBid, ...]:
        if self.profile is None:
            return ()
        self.last_bid = BackgroundBid(*self.profile.at(step, base_fee_wei))
        return (self.last_bid,)
