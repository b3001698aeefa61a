"""Draw the trader population from the scenario's distributions.

Every draw is made from the generator passed in, in a fixed order that does not depend on the
margin mode, so a CROSS and an ISOLATED run of the same seed hold the same traders (common
random numbers): same markets, directions, leverage, collateral, entry and holding times, stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.scenario.schema import Scenario
from sim.units import USD


@dataclass(frozen=True)
class TraderProfile:
    """One trader's draws (made before the margin mode is applied, so both arms share them)."""

    markets: tuple[int, ...]
    directions: tuple[int, ...]  # +1 long, -1 short, per market
    leverage: float  # total notional / collateral
    collateral_units: int
    wallet_units: int  # kept outside the exchange for top-ups
    entry_block: int
    holding_blocks: int
    stop_loss: float  # fraction of deposited collateral lost that triggers a close; 0 = none
    mode: str  # "cross" or "isolated" (drawn; experiments may override)


def _leverage(rng: np.random.Generator, lo: float, hi: float, kind: str) -> float:
    u = rng.random()
    if kind == "log_uniform":
        return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
    return lo + u * (hi - lo)


def draw_traders(scenario: Scenario, rng: np.random.Generator) -> list[TraderProfile]:
    """One :class:`TraderProfile` per trader."""
    t = scenario.traders
    n_markets = len(scenario.markets)
    # traders size positions so equity stays (1 + buffer) x the initial requirement
    max_im = max(m.initial_margin for m in scenario.markets)
    leverage_cap = 1.0 / (max_im * (1.0 + t.margin_buffer))
    profiles = []
    for _ in range(t.count):
        k = int(rng.integers(1, min(t.markets_per_trader_max, n_markets) + 1))
        markets = tuple(sorted(int(m) for m in rng.choice(n_markets, size=k, replace=False)))
        directions = tuple(1 if rng.random() < t.long_fraction else -1 for _ in range(k))
        leverage = min(
            _leverage(rng, t.leverage_min, t.leverage_max, t.leverage_distribution), leverage_cap
        )
        collateral = t.collateral_median_usd * float(
            np.exp(t.collateral_sigma * rng.standard_normal())
        )
        entry = int(rng.integers(0, t.entry_window_blocks))
        holding = max(1, int(rng.exponential(t.holding_blocks_mean)))
        uses_stop = rng.random() < t.stop_loss_adoption
        stop = float(np.clip(t.stop_loss + t.stop_loss_spread * (2 * rng.random() - 1), 0.01, 1.0))
        cross = rng.random() < t.cross_fraction
        profiles.append(
            TraderProfile(
                markets=markets,
                directions=directions,
                leverage=max(1.0, leverage),
                collateral_units=max(USD, int(collateral * USD)),
                wallet_units=int(t.top_up_wallet_usd * USD),
                entry_block=entry,
                holding_blocks=holding,
                stop_loss=stop if (uses_stop and t.stop_loss > 0) else 0.0,
                mode="cross" if cross else "isolated",
            )
        )
    return profiles
