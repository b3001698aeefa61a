"""Each agent's parameters, taken from the scenario by the model and handed to the agent at
construction (agents never read the scenario themselves)."""

from __future__ import annotations

from agents.arbitrageur import ArbitrageurParams
from agents.keeper import KeeperParams
from agents.liquidator import LiquidatorParams
from agents.oracle_reporter import TRACKING_PRIORITY_GWEI, ReporterParams
from agents.trader import TraderParams
from sim.scenario.schema import Scenario
from sim.units import fraction_to_ppm, gwei_to_wei, usd_to_units


def trader_params(s: Scenario) -> TraderParams:
    t = s.traders
    return TraderParams(
        priority_fee_wei=gwei_to_wei(t.priority_fee_gwei),
        latency_blocks=t.latency_blocks,
        derisk_fraction=t.derisk_fraction,
        derisk_health_trigger=t.derisk_health_trigger,
        top_up_enabled=t.top_up_enabled,
        top_up_health_trigger=t.top_up_health_trigger,
        top_up_delay_blocks=t.top_up_delay_blocks,
        top_up_target_health=t.top_up_target_health,
        tip_from_fee_history=t.tip_from_fee_history,
        tip_percentile=t.tip_percentile,
        rescue_tip_percentile=t.rescue_tip_percentile,
        speed_up_after_blocks=t.speed_up_after_blocks,
        fee_history_blocks=t.fee_history_blocks,
    )


def liquidator_params(s: Scenario, latency_blocks: int) -> LiquidatorParams:
    q = s.liquidators
    return LiquidatorParams(
        latency_blocks=latency_blocks,
        min_profit_usd=q.min_profit_usd,
        opening_bid_wei=gwei_to_wei(q.priority_fee_gwei),
        bid_increment=q.bid_increment,
        bid_cap_wei=gwei_to_wei(q.bid_cap_gwei),
        mode=q.mode,
        capital_units=usd_to_units(q.capital_usd) if q.mode == "takeover" else 0,
        unwind_max_trade_units=usd_to_units(q.unwind_max_trade_usd),
        tip_from_fee_history=q.tip_from_fee_history,
        tip_percentile=q.tip_percentile,
    )


def reporter_params(s: Scenario) -> ReporterParams:
    """With ``run.oracle_lag_enabled = false``: no delay, no threshold, a top bid."""
    o, lag = s.oracle, s.run.oracle_lag_enabled
    return ReporterParams(
        lag=lag,
        delay_blocks=o.observation_delay_blocks if lag else 0,
        deviation_threshold=o.deviation_threshold if lag else 0.0,
        heartbeat_s=o.heartbeat_s,
        priority_fee_wei=gwei_to_wei(o.priority_fee_gwei if lag else TRACKING_PRIORITY_GWEI),
        tip_from_fee_history=o.tip_from_fee_history and lag,
        tip_percentile=o.tip_percentile,
        estimator_blocks=o.estimator_blocks,
        bump_percent=o.bump_percent if o.tip_from_fee_history else 12.5,
        bump_min_wei=gwei_to_wei(o.bump_min_gwei) if o.tip_from_fee_history else 0,
        bump_threshold_blocks=o.bump_threshold_blocks if o.tip_from_fee_history else 1,
    )


def arbitrageur_params(s: Scenario, offset: int) -> ArbitrageurParams:
    a = s.arbitrageurs
    return ArbitrageurParams(
        min_gap=a.min_gap,
        max_trade_units=usd_to_units(a.max_trade_usd),
        hedge=a.hedge,
        latency_blocks=a.latency_blocks,
        priority_fee_wei=gwei_to_wei(a.priority_fee_gwei),
        offset=offset,
        tip_from_fee_history=a.tip_from_fee_history,
        tip_percentile=a.tip_percentile,
    )


def keeper_params(s: Scenario) -> KeeperParams:
    return KeeperParams(
        delay_blocks=s.keeper.delay_blocks,
        priority_fee_wei=gwei_to_wei(s.keeper.priority_fee_gwei),
        backstop_threshold_ppm=fraction_to_ppm(s.exchange.backstop_threshold),
        adl_enabled=s.exchange.adl_enabled,
    )


def keeper_needed(s: Scenario) -> bool:
    """The keeper exists only when the waterfall has a step for it."""
    return s.exchange.backstop_threshold > 0 or s.exchange.adl_enabled
