"""The scenario's block market: background demand and the fee market, built for the model."""

from __future__ import annotations

import math

from sim.market.background import BackgroundDemand, TierShape, UrgentDemandParams
from sim.scenario.pricepath import BackgroundProfile
from sim.scenario.schema import Scenario
from sim.units import gwei_to_wei

SECONDS_PER_YEAR = 365 * 24 * 3600
ACTIVITY_KINDS = frozenset({"liquidator", "arbitrageur"})  # bots the rest of the chain echoes


def calm_block_volatility(s: Scenario) -> tuple[float, ...]:
    """Each market's calm sd of one block's log return (annual volatility scaled to a block)."""
    scale = math.sqrt(s.run.block_time_s / SECONDS_PER_YEAR)
    return tuple(m.volatility_annual * scale for m in s.markets)


def urgent_params(s: Scenario) -> UrgentDemandParams:
    bg = s.background
    return UrgentDemandParams(
        block_gas_limit=s.chain.block_gas_limit,
        urgent_utilization=bg.urgent_utilization,
        full_stress_volatility_ratio=bg.full_stress_volatility_ratio,
        volatility_half_life_blocks=bg.volatility_half_life_blocks,
        calm_tip_wei=gwei_to_wei(bg.calm_priority_fee_gwei),
        crash_tip_wei=gwei_to_wei(bg.crash_priority_fee_gwei),
        median_max_fee_wei=gwei_to_wei(bg.urgent_max_fee_multiple * s.chain.initial_base_fee_gwei),
        calm_block_volatility=calm_block_volatility(s),
    )


def background_demand(s: Scenario, gas_free: bool) -> BackgroundDemand:
    """The scenario's background demand (none without gas friction: block space is then
    unlimited and free)."""
    if gas_free:
        return BackgroundDemand(None)
    bg = s.background
    return BackgroundDemand(
        BackgroundProfile.from_scenario(s),
        shape=TierShape(bg.tip_tiers, bg.tip_dispersion),
        urgent=urgent_params(s) if bg.urgent_utilization > 0 else None,
        activity_multiple=bg.activity_multiple,
        queue_blocks=bg.queue_blocks,
    )


def activity_of(records) -> tuple[tuple[int, int], ...]:
    """``(tip_wei, gas_used)`` of a block's liquidation and arbitrage transactions."""
    return tuple(
        (r.priority_fee_per_gas_wei, r.gas_used) for r in records if r.sender_kind in ACTIVITY_KINDS
    )
