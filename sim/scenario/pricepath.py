"""Exogenous external ("CEX") prices, their endogenous price impact, and background gas demand.

Everything random here draws from a :class:`numpy.random.Generator` passed in; nothing keeps
module-level state. Paths are arrays of shape ``(blocks + 1, n_markets)``: row ``b`` is the
external price at block ``b`` (row 0 is the initial price).

- :func:`simulate_gbm`: correlated geometric Brownian motion with optional Merton jumps
  (Poisson arrivals, lognormal sizes, drift-compensated so the expected return is the drift).
- :func:`crash_multiplier`: a scripted crash overlay (fall over a window, linear or
  exponential, optional partial recovery) multiplied onto the GBM path.
- :func:`read_price_csv`: a scripted series, one column per market, one row per block.
- :class:`ExternalMarket`: the pre-drawn exogenous path plus the price impact of agents'
  external trades (:mod:`sim.scenario.impact`); the price agents and the oracle reporter
  observe.
- :class:`BackgroundProfile`: exogenous demand for block space, rising with the crash
  (feed it to the block builder as ``sim.market.feemarket`` background bids).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from sim.scenario.impact import depth_path, flow_decay, representation_scale, sqrt_impact

if TYPE_CHECKING:
    from sim.scenario.schema import Scenario

__all__ = [
    "SECONDS_PER_YEAR",
    "BackgroundProfile",
    "ExternalMarket",
    "PricePathError",
    "correlation_factor",
    "correlation_matrix",
    "crash_intensity",
    "crash_multiplier",
    "exogenous_paths",
    "read_price_csv",
    "simulate_gbm",
]

SECONDS_PER_YEAR = 365.25 * 24 * 3600
SECONDS_PER_DAY = 24 * 3600
_PSD_TOLERANCE = 1e-10


class PricePathError(ValueError):
    """A price path is impossible: a bad correlation matrix, a bad CSV series, or a price that
    would be NaN, infinite or not positive (the message names the market and block)."""


def _require_generator(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


# --------------------------------------------------------------------------------------------
# Correlation
# --------------------------------------------------------------------------------------------


def correlation_matrix(
    n: int, rho: float = 0.0, matrix: Sequence[Sequence[float]] = ()
) -> np.ndarray:
    """The ``n x n`` correlation matrix: ``matrix`` if given, else ``rho`` off the diagonal."""
    if len(matrix) > 0:
        return np.array(matrix, dtype=float)
    corr = np.full((n, n), float(rho))
    np.fill_diagonal(corr, 1.0)
    return corr


def correlation_factor(corr: np.ndarray) -> np.ndarray:
    """A factor ``L`` with ``L @ L.T == corr`` (correlated normals are ``z @ L.T``).

    Cholesky when ``corr`` is positive definite; for a positive semi-definite but singular matrix
    (e.g. correlation 1) a factor from the eigen-decomposition. Raises :class:`PricePathError`
    when ``corr`` is not square, not symmetric, has a diagonal other than 1, entries outside
    [-1, 1], or is not positive semi-definite.
    """
    corr = np.asarray(corr, dtype=float)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise PricePathError(f"correlation matrix must be square, got shape {corr.shape}")
    if not np.all(np.isfinite(corr)):
        raise PricePathError("correlation matrix has a NaN or infinite entry")
    if not np.allclose(corr, corr.T, atol=1e-12):
        i, j = np.argwhere(~np.isclose(corr, corr.T, atol=1e-12))[0]
        raise PricePathError(
            f"correlation matrix is not symmetric: entry [{i}][{j}] = {corr[i, j]:g} but "
            f"[{j}][{i}] = {corr[j, i]:g}"
        )
    if not np.allclose(np.diag(corr), 1.0, atol=1e-12):
        raise PricePathError(f"correlation matrix diagonal must be 1, got {np.diag(corr).tolist()}")
    if np.any(np.abs(corr) > 1.0 + 1e-12):
        raise PricePathError("correlation matrix entries must be between -1 and 1")
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        pass
    eigenvalues, eigenvectors = np.linalg.eigh(corr)
    smallest = float(eigenvalues.min())
    if smallest < -_PSD_TOLERANCE:
        raise PricePathError(
            f"correlation matrix is not positive semi-definite (smallest eigenvalue {smallest:.4g})"
        )
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


# --------------------------------------------------------------------------------------------
# Exogenous paths
# --------------------------------------------------------------------------------------------


def simulate_gbm(
    rng: np.random.Generator,
    initial: Sequence[float] | np.ndarray,
    *,
    blocks: int,
    dt_years: float,
    drift_annual: Sequence[float] | np.ndarray,
    volatility_annual: Sequence[float] | np.ndarray,
    corr_factor: np.ndarray,
    jump_rate_per_block: Sequence[float] | np.ndarray | float = 0.0,
    jump_mean: Sequence[float] | np.ndarray | float = 0.0,
    jump_sd: Sequence[float] | np.ndarray | float = 0.0,
    volatility_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Correlated GBM with Merton jumps, shape ``(blocks + 1, n)``.

    The log return of step ``t`` (block ``t`` to ``t + 1``) of market ``i`` is
    ``(mu_i - s_i**2 / 2 - lam_i * k_i) dt + s_i sqrt(dt) (L z_t)_i + sum of N_ti jumps`` with
    ``s_i = volatility_i * volatility_scale[t]``, ``N_ti ~ Poisson(lam_i)`` jumps each
    ``~ Normal(jump_mean_i, jump_sd_i)`` in log terms and ``k_i = E[exp(jump)] - 1``, so that
    the expected price grows at the drift. The draws are always made in the same order and
    shape (normals, Poisson counts, jump normals) whatever the parameters, so changing e.g. the
    jump intensity keeps the same Brownian path for the same generator state.
    """
    rng = _require_generator(rng)
    s0 = np.asarray(initial, dtype=float)
    n = s0.shape[0]
    mu = np.broadcast_to(np.asarray(drift_annual, dtype=float), (n,))
    vol = np.broadcast_to(np.asarray(volatility_annual, dtype=float), (n,))
    lam = np.broadcast_to(np.asarray(jump_rate_per_block, dtype=float), (n,))
    jm = np.broadcast_to(np.asarray(jump_mean, dtype=float), (n,))
    js = np.broadcast_to(np.asarray(jump_sd, dtype=float), (n,))
    scale = np.ones(blocks) if volatility_scale is None else np.asarray(volatility_scale, float)
    if scale.shape != (blocks,):
        raise ValueError(f"volatility_scale must have shape ({blocks},), got {scale.shape}")

    z = rng.standard_normal((blocks, n))
    counts = rng.poisson(lam, size=(blocks, n))
    jump_z = rng.standard_normal((blocks, n))

    sigma = vol[None, :] * scale[:, None]  # (blocks, n)
    k = np.exp(jm + 0.5 * js**2) - 1.0
    drift = (mu[None, :] - 0.5 * sigma**2) * dt_years - lam * k
    diffusion = sigma * math.sqrt(dt_years) * (z @ np.asarray(corr_factor, float).T)
    jumps = counts * jm + np.sqrt(counts) * js * jump_z
    log_returns = drift + diffusion + jumps
    log_path = np.vstack([np.zeros((1, n)), np.cumsum(log_returns, axis=0)])
    with np.errstate(over="ignore"):
        return s0[None, :] * np.exp(log_path)


def crash_multiplier(
    blocks: int,
    *,
    start_block: int,
    duration_blocks: int,
    falls: Sequence[float] | np.ndarray,
    shape: Literal["linear", "exponential"] = "exponential",
    recovery_fraction: float = 0.0,
    recovery_blocks: int = 1,
) -> np.ndarray:
    """Price multiplier of a scripted crash, shape ``(blocks + 1, n)``.

    1 up to ``start_block``; falls to ``1 - fall`` at ``start_block + duration_blocks``
    ('linear': by the same amount each block; 'exponential': by the same fraction each block);
    then regains ``recovery_fraction`` of the fall over ``recovery_blocks`` (same shape) and
    stays there.
    """
    f = np.asarray(falls, dtype=float)
    b = np.arange(blocks + 1, dtype=float)[:, None]
    end = start_block + duration_blocks
    x = np.clip((b - start_block) / duration_blocks, 0.0, 1.0)
    y = np.clip((b - end) / max(recovery_blocks, 1), 0.0, 1.0)
    trough = 1.0 - f
    final = 1.0 - f * (1.0 - recovery_fraction)
    if shape == "linear":
        falling = 1.0 - f * x
        recovering = trough + (final - trough) * y
    elif shape == "exponential":
        falling = trough**x
        recovering = trough * (final / trough) ** y
    else:
        raise ValueError(f"unknown crash shape {shape!r}")
    return np.where(b <= end, falling, recovering)


def crash_intensity(
    blocks: int,
    *,
    start_block: int,
    duration_blocks: int,
    ramp_blocks: int,
    decay_half_life_blocks: float,
    enabled: bool = True,
) -> np.ndarray:
    """Crash intensity in [0, 1] per block, shape ``(blocks + 1,)``: 0 before the crash, rising
    linearly to 1 over ``ramp_blocks`` from ``start_block``, 1 until the crash ends, then
    halving every ``decay_half_life_blocks``. Drives background demand."""
    b = np.arange(blocks + 1, dtype=float)
    if not enabled:
        return np.zeros(blocks + 1)
    end = start_block + duration_blocks
    rising = np.clip((b - start_block) / ramp_blocks, 0.0, 1.0) if ramp_blocks > 0 else 1.0
    during = np.where(b >= start_block, rising, 0.0)
    level_at_end = min(1.0, duration_blocks / ramp_blocks) if ramp_blocks > 0 else 1.0
    after = level_at_end * 0.5 ** ((b - end) / decay_half_life_blocks)
    return np.where(b < end, during, after)


def read_price_csv(path: str | Path, names: Sequence[str], blocks: int) -> np.ndarray:
    """Prices from a CSV file with a header row naming one column per market (other columns,
    e.g. ``block``, are ignored) and one row per block from block 0. Returns the first
    ``blocks + 1`` rows, shape ``(blocks + 1, n)``. Missing columns, empty or non-numeric cells,
    NaN, infinite, zero or negative prices and too few rows raise :class:`PricePathError`."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as err:
        raise PricePathError(f"{path}: cannot open price file ({err.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise PricePathError(f"{path}: empty price file (expected a header row)")
        header = [h.strip() for h in header]
        columns = []
        for name in names:
            if name not in header:
                raise PricePathError(
                    f"{path}: no column '{name}' for market '{name}' (columns: {', '.join(header)})"
                )
            columns.append(header.index(name))
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if len(rows) == blocks + 1:
                break
            if not row or all(not c.strip() for c in row):
                continue
            where_row = f"{path}: line {line_no} (block {len(rows)})"
            rows.append(_parse_csv_row(row, names, columns, where_row))
    if len(rows) < blocks + 1:
        raise PricePathError(
            f"{path}: {len(rows)} price rows (blocks 0..{len(rows) - 1}) but the run needs "
            f"{blocks + 1} (blocks 0..{blocks})"
        )
    return np.array(rows, dtype=float).reshape(blocks + 1, len(names))


def _parse_csv_row(
    row: list[str], names: Sequence[str], columns: list[int], where_row: str
) -> list[float]:
    values = []
    for name, col in zip(names, columns, strict=True):
        where = f"{where_row}, column '{name}'"
        cell = row[col].strip() if col < len(row) else ""
        if not cell:
            raise PricePathError(f"{where}: missing price")
        try:
            value = float(cell)
        except ValueError:
            raise PricePathError(f"{where}: not a number: {cell!r}") from None
        if math.isnan(value):
            raise PricePathError(f"{where}: price is NaN")
        if not math.isfinite(value) or value <= 0:
            raise PricePathError(f"{where}: price must be positive and finite, got {cell}")
        values.append(value)
    return values


def exogenous_paths(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    """The scenario's exogenous external prices, shape ``(run.blocks + 1, n_markets)``: GBM with
    jumps times the crash overlay, or the CSV series. Checked: no NaN, infinite or
    non-positive price (:class:`PricePathError` names market and block)."""
    rng = _require_generator(rng)
    markets = scenario.markets
    names = [m.name for m in markets]
    blocks = scenario.run.blocks
    if scenario.price_path.kind == "csv":
        path = read_price_csv(scenario.price_path.csv_path, names, blocks)
    else:
        path = _gbm_for(scenario, rng)
    check_path(path, names)
    return path


def _gbm_for(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    markets = scenario.markets
    blocks = scenario.run.blocks
    block_time = scenario.run.block_time_s
    crash = scenario.crash
    pp = scenario.price_path
    factor = correlation_factor(
        correlation_matrix(len(markets), pp.correlation, pp.correlation_matrix)
    )
    scale = np.ones(blocks)
    if crash.enabled:
        steps = np.arange(blocks)
        in_crash = (steps >= crash.start_block) & (
            steps < crash.start_block + crash.duration_blocks
        )
        scale[in_crash] = crash.volatility_multiplier
    path = simulate_gbm(
        rng,
        [m.initial_price_usd for m in markets],
        blocks=blocks,
        dt_years=block_time / SECONDS_PER_YEAR,
        drift_annual=[m.drift_annual for m in markets],
        volatility_annual=[m.volatility_annual for m in markets],
        corr_factor=factor,
        jump_rate_per_block=[
            m.jump_intensity_per_day * block_time / SECONDS_PER_DAY for m in markets
        ],
        jump_mean=[m.jump_mean for m in markets],
        jump_sd=[m.jump_sd for m in markets],
        volatility_scale=scale,
    )
    if crash.enabled:
        path = path * crash_multiplier(
            blocks,
            start_block=crash.start_block,
            duration_blocks=crash.duration_blocks,
            falls=[m.crash_fall for m in markets],
            shape=crash.shape,
            recovery_fraction=crash.recovery_fraction,
            recovery_blocks=crash.recovery_blocks,
        )
    return path


def check_path(path: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`PricePathError` at the first NaN, infinite or non-positive price."""
    bad = ~np.isfinite(path) | (path <= 0)
    if bad.any():
        block, market = (int(i) for i in np.argwhere(bad)[0])
        raise PricePathError(_bad_price(names[market], block, float(path[block, market])))


def _bad_price(name: str, block: int, value: float) -> str:
    what = "NaN" if math.isnan(value) else ("infinite" if math.isinf(value) else f"{value:g}")
    return f"market '{name}', block {block}: external price would be {what} (must be positive)"


# --------------------------------------------------------------------------------------------
# External market with endogenous impact
# --------------------------------------------------------------------------------------------


class ExternalMarket:
    """External prices: the pre-drawn exogenous path times ``1 + impact``.

    The impact is the square-root impact (:mod:`sim.scenario.impact`) of the decaying net flow
    of agents' external trades against the market's depth at that block. A trade of signed
    notional ``q`` USD in market ``i`` during block ``t`` (a buy, ``q > 0``, raises the price),
    ``f`` of it forced flow (liquidation closes), adds ``q - f + f * flow_scale[i]``
    real-equivalent USD to the flow from block ``t + 1`` on (so every agent in block ``t`` sees
    the same price): forced flow stands for the represented book's liquidations, the rest only
    for itself. The flow decays so that the impact halves every ``impact_half_life_blocks[i]``
    blocks. The part of the flow that comes from spillover
    (positions a CROSS liquidation closed in profit, :mod:`sim.output.contagion`) is tracked
    beside it, so the impact without it can be read back.

    Prices at blocks already observed never change: a trade dated before the last observed
    block is an error. With ``impact_enabled=False`` trades are ignored (exogenous prices only).
    """

    def __init__(
        self,
        names: Sequence[str],
        exogenous: np.ndarray,
        depth_usd: np.ndarray | Sequence[float],
        impact_half_life_blocks: Sequence[float],
        *,
        flow_scale: Sequence[float] | None = None,
        impact_enabled: bool = True,
    ) -> None:
        self._names = tuple(names)
        exo = np.array(exogenous, dtype=float)
        n = len(self._names)
        if exo.ndim != 2 or exo.shape[1] != n or exo.shape[0] < 1:
            raise ValueError(f"exogenous path must have shape (blocks + 1, {n}), got {exo.shape}")
        check_path(exo, self._names)
        exo.flags.writeable = False
        self._exo = exo
        depth = np.broadcast_to(np.asarray(depth_usd, dtype=float), exo.shape).copy()
        if not np.all(np.isfinite(depth) & (depth > 0)):
            raise ValueError("external depth must be positive and finite in every block")
        depth.flags.writeable = False
        self._depth = depth
        self._decay = flow_decay(impact_half_life_blocks)
        scale = np.ones(n) if flow_scale is None else np.asarray(flow_scale, dtype=float)
        if self._decay.shape != (n,) or scale.shape != (n,):
            raise ValueError("one impact half-life and flow scale per market are required")
        self._scale = scale
        self._enabled = impact_enabled
        self._impulse = np.zeros_like(exo)  # real-equivalent flow added at each block
        self._spill_impulse = np.zeros_like(exo)  # the spillover part of it
        self._flow = np.zeros_like(exo)  # decayed flow at each block (valid up to _through)
        self._spill = np.zeros_like(exo)
        self._through = np.full(n, -1)  # last block whose flow is computed (= observed)
        # price_e8 already read, by (market index, block): an observed block's price never
        # changes (apply_trade refuses to move it), so a stored one is never out of date
        self._observed_price_e8: dict[tuple[int, int], int] = {}

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        rng: np.random.Generator,
        simulated_open_interest_usd: Sequence[float] | None = None,
    ) -> ExternalMarket:
        """Draw the scenario's exogenous paths from ``rng`` and wrap them with the markets'
        depth (thinning with the path's volatility) and impact half-lives; each simulated USD
        stands for ``represented_open_interest_usd / simulated_open_interest_usd`` (1 without a
        simulated book). Impact is on when ``run.endogenous_impact`` is."""
        markets = scenario.markets
        exo = exogenous_paths(scenario, rng)
        dt = scenario.run.block_time_s / SECONDS_PER_YEAR
        depth = depth_path(
            exo,
            [m.external_depth_usd for m in markets],
            [m.volatility_annual * math.sqrt(dt) for m in markets],
            [m.depth_volatility_exponent for m in markets],
            [m.depth_volatility_window_blocks for m in markets],
            [m.min_depth_fraction for m in markets],
        )
        simulated = (
            np.zeros(len(markets))
            if simulated_open_interest_usd is None
            else simulated_open_interest_usd
        )
        return cls(
            [m.name for m in markets],
            exo,
            depth,
            [m.impact_half_life_blocks for m in markets],
            flow_scale=representation_scale(
                [m.represented_open_interest_usd for m in markets], simulated
            ),
            impact_enabled=scenario.run.endogenous_impact,
        )

    # -- lookup --------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def last_block(self) -> int:
        """The last block the path covers (``run.blocks``)."""
        return self._exo.shape[0] - 1

    @property
    def exogenous(self) -> np.ndarray:
        """The exogenous path, shape ``(blocks + 1, n)`` (read-only)."""
        return self._exo

    @property
    def depth(self) -> np.ndarray:
        """The 1% depth per block, USD, shape ``(blocks + 1, n)`` (read-only; exogenous)."""
        return self._depth

    @property
    def flow_scale(self) -> np.ndarray:
        """Real-equivalent USD per simulated USD traded, per market."""
        return self._scale.copy()

    def index(self, market: str | int) -> int:
        """Market index from a name or an index."""
        if isinstance(market, str):
            try:
                return self._names.index(market)
            except ValueError:
                raise KeyError(
                    f"unknown market {market!r} (markets: {', '.join(self._names)})"
                ) from None
        i = int(market)
        if not 0 <= i < len(self._names):
            raise KeyError(f"market index {i} out of range (0..{len(self._names) - 1})")
        return i

    def _block(self, block: int) -> int:
        b = int(block)
        if not 0 <= b <= self.last_block:
            raise IndexError(f"block {b} is outside the price path (0..{self.last_block})")
        return b

    # -- impact --------------------------------------------------------------------------------

    def _advance(self, i: int, b: int) -> None:
        """Compute the decayed flow of market ``i`` up to block ``b`` (marks it observed)."""
        start = int(self._through[i]) + 1
        if b < start:
            return
        flow = self._flow[start - 1, i] if start > 0 else 0.0
        spill = self._spill[start - 1, i] if start > 0 else 0.0
        d = self._decay[i]
        for t in range(start, b + 1):
            flow = flow * d + self._impulse[t, i]
            spill = spill * d + self._spill_impulse[t, i]
            self._flow[t, i] = flow
            self._spill[t, i] = spill
        self._through[i] = b

    def flow_usd(self, market: str | int, block: int) -> float:
        """The decayed real-equivalent net flow (buys > 0) in effect at ``block``."""
        i, b = self.index(market), self._block(block)
        self._advance(i, b)
        return float(self._flow[b, i])

    def impact(self, market: str | int, block: int) -> float:
        """The fractional price impact in effect at ``block`` (> -1; marks the block observed)."""
        i, b = self.index(market), self._block(block)
        self._advance(i, b)
        return math.expm1(sqrt_impact(float(self._flow[b, i]), float(self._depth[b, i])))

    def impact_without_spillover(self, market: str | int, block: int) -> float:
        """The fractional impact at ``block`` had the spillover flow not been traded."""
        i, b = self.index(market), self._block(block)
        self._advance(i, b)
        rest = float(self._flow[b, i] - self._spill[b, i])
        return math.expm1(sqrt_impact(rest, float(self._depth[b, i])))

    # -- prices --------------------------------------------------------------------------------

    def price(self, market: str | int, block: int) -> float:
        """External price in USD at ``block``: exogenous x (1 + impact). Raises
        :class:`PricePathError` (naming market and block) if that is not positive and finite."""
        i = self.index(market)
        value = float(self._exo[self._block(block), i]) * (1.0 + self.impact(i, block))
        if not (math.isfinite(value) and value > 0):
            raise PricePathError(_bad_price(self._names[i], int(block), value))
        return value

    def price_e8(self, market: str | int, block: int) -> int:
        """:meth:`price` in the oracle's units (USD x 1e8, rounded to nearest); a price that
        rounds to 0 raises :class:`PricePathError`."""
        if type(market) is int and type(block) is int:  # stored under validated ints only
            value = self._observed_price_e8.get((market, block))
            if value is not None:
                return value
        i, b = self.index(market), self._block(block)
        value = self._observed_price_e8.get((i, b))
        if value is None:
            value = round(self.price(i, b) * 1e8)
            if value <= 0:
                raise PricePathError(
                    f"market '{self._names[i]}', block {block}: external price rounds to 0 in "
                    "1e-8 USD"
                )
            self._observed_price_e8[i, b] = value
        return value

    def prices(self, block: int) -> dict[str, float]:
        """Every market's external price at ``block``."""
        return {name: self.price(i, block) for i, name in enumerate(self._names)}

    # -- trades --------------------------------------------------------------------------------

    def apply_trade(
        self,
        market: str | int,
        notional_usd_signed: float,
        block: int,
        *,
        forced_usd: float = 0.0,
        spillover_usd: float = 0.0,
    ) -> None:
        """Record an external trade of signed USD notional (buy > 0) made during ``block``; it
        moves the price from ``block + 1`` on. ``forced_usd`` of it (same sign, clipped to the
        trade) is forced flow, which stands for the represented book's and is scaled by
        :attr:`flow_scale`; ``spillover_usd`` of that (clipped to it) is spillover. The rest
        stands for itself. No-op when impact is disabled or ``block`` is the path's last."""
        i, b = self.index(market), self._block(block)
        q, f, s = float(notional_usd_signed), float(forced_usd), float(spillover_usd)
        if not all(math.isfinite(x) for x in (q, f, s)):
            raise PricePathError(
                f"market '{self._names[i]}', block {b}: trade notional must be finite, got {q}"
            )
        if not self._enabled or b >= self.last_block or q == 0.0:
            return
        if b + 1 <= self._through[i]:
            raise PricePathError(
                f"market '{self._names[i]}': a trade at block {b} would change the price at "
                f"block {b + 1}, already observed (observed through block {self._through[i]})"
            )
        f = _part_of(f, q)
        s = _part_of(s, f)
        self._impulse[b + 1, i] += (q - f) + self._scale[i] * f
        self._spill_impulse[b + 1, i] += self._scale[i] * s


def _part_of(part: float, whole: float) -> float:
    """``part`` clipped to ``whole``: 0 unless of the same sign, at most its size."""
    return math.copysign(min(abs(part), abs(whole)), whole) if part * whole > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Background demand for block space
# --------------------------------------------------------------------------------------------


def _gwei_to_wei(gwei: float) -> int:
    return round(gwei * 1e9)


@dataclass(frozen=True, eq=False)
class BackgroundProfile:
    """Exogenous demand for block space per block (scenario section ``[background]``).

    For the block builder (``sim.market.feemarket.BackgroundDemand`` is a callable
    ``(step, base_fee_wei) -> bids``)::

        profile = BackgroundProfile.from_scenario(scenario)
        background = lambda step, base_fee: (BackgroundBid(*profile.at(step, base_fee)),)

    Utilisation ``u(b) = base + (crash - base) * intensity(b)`` where the intensity follows the
    crash window (:func:`crash_intensity`). Gas demanded is ``u(b) * block_gas_limit`` times
    ``(reference_base_fee / base_fee) ** fee_elasticity`` when the current base fee is given.
    The priority fee moves from the calm to the crash value with the same intensity.
    """

    block_gas_limit: int
    base_utilization: float
    crash_utilization: float
    calm_priority_fee_wei: int
    crash_priority_fee_wei: int
    fee_elasticity: float
    reference_base_fee_wei: int
    intensity: np.ndarray  # shape (blocks + 1,)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> BackgroundProfile:
        bg, crash = scenario.background, scenario.crash
        intensity = crash_intensity(
            scenario.run.blocks,
            start_block=crash.start_block,
            duration_blocks=crash.duration_blocks,
            ramp_blocks=bg.ramp_blocks,
            decay_half_life_blocks=bg.decay_half_life_blocks,
            enabled=crash.enabled,
        )
        intensity.flags.writeable = False
        return cls(
            block_gas_limit=scenario.chain.block_gas_limit,
            base_utilization=bg.base_utilization,
            crash_utilization=bg.crash_utilization,
            calm_priority_fee_wei=_gwei_to_wei(bg.calm_priority_fee_gwei),
            crash_priority_fee_wei=_gwei_to_wei(bg.crash_priority_fee_gwei),
            fee_elasticity=bg.fee_elasticity,
            reference_base_fee_wei=_gwei_to_wei(scenario.chain.initial_base_fee_gwei),
            intensity=intensity,
        )

    def _intensity(self, block: int) -> float:
        b = min(max(int(block), 0), self.intensity.shape[0] - 1)
        return float(self.intensity[b])

    def utilization(self, block: int) -> float:
        """Demand at the reference base fee, as a fraction of the block gas limit."""
        x = self._intensity(block)
        return self.base_utilization + (self.crash_utilization - self.base_utilization) * x

    def gas_demand(self, block: int, base_fee_wei: int | None = None) -> int:
        """Gas the background wants included in ``block`` (may exceed the gas limit)."""
        demand = self.utilization(block) * self.block_gas_limit
        if base_fee_wei is not None and self.fee_elasticity > 0 and base_fee_wei > 0:
            demand *= (self.reference_base_fee_wei / base_fee_wei) ** self.fee_elasticity
        return int(demand)

    def priority_fee_wei(self, block: int) -> int:
        """Priority fee per gas the background bids in ``block``."""
        x = self._intensity(block)
        fee = (
            self.calm_priority_fee_wei
            + (self.crash_priority_fee_wei - self.calm_priority_fee_wei) * x
        )
        return round(fee)

    def at(self, block: int, base_fee_wei: int | None = None) -> tuple[int, int]:
        """``(gas_demand, priority_fee_wei)`` for ``block``."""
        return self.gas_demand(block, base_fee_wei), self.priority_fee_wei(block)
