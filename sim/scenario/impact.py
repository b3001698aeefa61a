"""How external trades move the external price: square-root impact of a decaying order flow
against an order book whose depth thins as volatility rises.

The model (docs/model.md, 7.9):

- **Depth.** ``external_depth_usd`` is the USD of resting bids within 1% of the mid on the whole
  external market in calm conditions (a public order-book figure, e.g. Kaiko's 1% market
  depth, one side). It thins as the exogenous path's realized volatility rises above the
  market's calm volatility: ``depth(b) = depth * clip((sigma_calm / sigma(b)) ** exponent,
  min_depth_fraction, 1)``.
  With ``exponent = 2`` this is what the square-root law implies at constant volume
  (impact ~ sigma * sqrt(Q / V), so the flow that moves the price 1% scales as 1 / sigma**2).
- **Scale.** The simulated book is small against the real market, so each simulated USD of
  forced flow (liquidation closes, hedged by arbitrageurs) stands for
  ``represented_open_interest_usd / simulated open interest`` real USD
  (:func:`representation_scale`); the simulated open interest is the traders' drawn exposure
  per market (:func:`drawn_open_interest_usd`), which both arms of a paired run share.
  Traders' own trades (entries, exits, stops, de-risking) stand only for themselves: the
  simulated book is built within the run, where the real one exists before the event.
- **Flow.** The real-equivalent signed flow ``E`` (buys > 0) decays every block by
  ``0.25 ** (1 / impact_half_life_blocks)`` (resilience: the book refills), so that with no
  new trades the *impact* halves every ``impact_half_life_blocks``.
- **Impact** on the log price: ``sign(E) * 0.01 * sqrt(|E| / depth(b))`` (:func:`sqrt_impact`):
  selling the 1% depth moves the price about 1%, selling four times that about 2%. The
  square-root law of metaorder impact (Toth et al. 2011, Phys. Rev. X 1, 021006; on Bitcoin:
  Donier and Bonart 2015, Market Microstructure and Liquidity 1(2), over four decades of
  metaorder size), with the transient flow of Alfonsi, Fruth and Schied 2010 (Quantitative
  Finance 10(2)): price impact is a concave function of a volume effect that decays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sim.units import USD

if TYPE_CHECKING:
    from sim.scenario.population import TraderProfile

__all__ = [
    "IMPACT_AT_DEPTH",
    "depth_path",
    "drawn_open_interest_usd",
    "flow_decay",
    "realized_volatility",
    "representation_scale",
    "sqrt_impact",
]

#: Log-price move of a sale of exactly the 1% depth (the definition of that depth).
IMPACT_AT_DEPTH = 0.01


def sqrt_impact(flow_usd: float, depth_usd: float) -> float:
    """Impact on the log price of a net real-equivalent flow (buys > 0) against ``depth_usd``
    of 1% depth: ``sign * 0.01 * sqrt(|flow| / depth)``."""
    if flow_usd == 0.0:
        return 0.0
    return math.copysign(IMPACT_AT_DEPTH * math.sqrt(abs(flow_usd) / depth_usd), flow_usd)


def flow_decay(impact_half_life_blocks: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-block decay of the flow so that the square-root impact halves every half-life
    (the flow itself then halves every half of it)."""
    return 0.25 ** (1.0 / np.asarray(impact_half_life_blocks, dtype=float))


def realized_volatility(exogenous: np.ndarray, window_blocks: Sequence[int]) -> np.ndarray:
    """Per block and market, the root mean square of the exogenous log returns over the last
    ``window_blocks`` blocks up to and including block ``b`` (not demeaned: a steady fall counts
    as volatility, as it does for a market maker); 0 at block 0. Shape of ``exogenous``."""
    exo = np.asarray(exogenous, dtype=float)
    r2 = np.zeros_like(exo)
    r2[1:] = np.diff(np.log(exo), axis=0) ** 2
    csum = np.vstack([np.zeros((1, exo.shape[1])), np.cumsum(r2, axis=0)])
    out = np.zeros_like(exo)
    b = np.arange(exo.shape[0])
    for i, w in enumerate(window_blocks):
        lo = np.maximum(b - int(w), 0)  # returns of blocks lo+1 .. b
        n = np.maximum(b - lo, 1)
        out[:, i] = np.sqrt((csum[b + 1, i] - csum[lo + 1, i]) / n)
    return out


def depth_path(
    exogenous: np.ndarray,
    calm_depth_usd: Sequence[float],
    calm_volatility_per_block: Sequence[float],
    exponent: Sequence[float],
    window_blocks: Sequence[int],
    min_fraction: Sequence[float],
) -> np.ndarray:
    """Depth per block and market: the calm depth times
    ``clip((calm / realized) ** exponent, min_fraction, 1)`` (no thinning where the calm
    volatility or the exponent is 0). Shape of ``exogenous``."""
    sigma = realized_volatility(exogenous, window_blocks)
    calm = np.asarray(calm_volatility_per_block, dtype=float)
    gamma = np.asarray(exponent, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sigma > calm[None, :], calm[None, :] / sigma, 1.0)
    thin = np.where((calm[None, :] > 0) & (gamma[None, :] > 0), ratio ** gamma[None, :], 1.0)
    floor = np.asarray(min_fraction, dtype=float)[None, :]
    return np.asarray(calm_depth_usd, dtype=float)[None, :] * np.maximum(thin, floor)


def drawn_open_interest_usd(profiles: Iterable[TraderProfile], n_markets: int) -> np.ndarray:
    """The simulated book's open interest per market: every trader's drawn notional
    (collateral x leverage, spread evenly over its markets), in USD."""
    out = np.zeros(n_markets)
    for p in profiles:
        per_market = p.collateral_units / USD * p.leverage / len(p.markets)
        for m in p.markets:
            out[m] += per_market
    return out


def representation_scale(
    represented_open_interest_usd: Sequence[float], simulated_open_interest_usd: Sequence[float]
) -> np.ndarray:
    """Real USD each simulated USD of flow stands for: represented / simulated open interest
    (1 where nothing is represented or the simulated book holds none of the market)."""
    rep = np.asarray(represented_open_interest_usd, dtype=float)
    sim = np.asarray(simulated_open_interest_usd, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((rep > 0) & (sim > 0), rep / sim, 1.0)
