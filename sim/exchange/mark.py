"""The exchange's robust mark price replicated exactly (``MarginExchange._markPrice``,
``_markBasisNow`` and ``MarginMath.halfLifeDecayWad``), for the account mirror and for tests.

A market whose margin price is the mark (``exchange.margin_price = "mark"``) margins at

    median(index, venue, index x (1 + EMA of the basis venue / index - 1))

as Hyperliquid's mark price (docs, "Robust price indices": the median of the oracle plus a
150-second EMA of the book's basis, the book, and external perp prices). The EMA is
time-weighted, kept as numerator / denominator (``numerator = numerator x w + sample x dt``,
``denominator = denominator x w + dt``, ``w = 2^(-dt / half-life)``), sampled by the contract the
first time an entry point touches the market in a block (event ``MarkBasisUpdated``), and
advanced to "now" with the current basis as newest sample when a price is read.

Every operation is the contract's integer arithmetic: Python's ``//`` on a positive divisor
rounds toward -infinity as ``MarginMath.mulDivFloor`` does, and unsigned divisions are exact
floors in both.
"""

from __future__ import annotations

from dataclasses import dataclass

WAD = 10**18
LN2_WAD = 693_147_180_559_945_309
MAX_BASIS_WAD = 10**24  # MarginExchange.MAX_BASIS_WAD: cap on one basis sample


@dataclass
class MarkBasis:
    """A market's stored basis EMA (``IMarginExchange.MarkBasis``)."""

    numerator: int = 0  # sum of samples (1e18 = 100%) x seconds x weight
    denominator: int = 0  # sum of seconds x weight, x 1e18
    updated_at_s: int = 0  # time of the last sample


def half_life_decay_wad(dt_s: int, half_life_s: int) -> int:
    """``MarginMath.halfLifeDecayWad``: 2^(-dt / half-life) x 1e18."""
    x = dt_s * WAD // half_life_s
    whole = x // WAD
    if whole >= 64:
        return 0
    y = (x % WAD) * LN2_WAD // WAD
    term = total = WAD
    n = 1
    while term != 0:
        term = term * y // (n * WAD)
        total = total - term if n % 2 == 1 else total + term
        n += 1
    return total >> whole


def median3(a: int, b: int, c: int) -> int:
    """``MarginMath.median3``."""
    lo, hi = (a, b) if a < b else (b, a)
    if c <= lo:
        return lo
    return c if c < hi else hi


def basis_now(
    state: MarkBasis, index_e8: int, venue_e8: int, now_s: int, half_life_s: int
) -> tuple[int, int, int, int]:
    """``MarginExchange._markBasisNow``: (sample, numerator, denominator, EMA) as of ``now_s``.
    A time before the last sample (the mirror read mid-block) counts as no time elapsed."""
    sample = min((venue_e8 - index_e8) * WAD // index_e8, MAX_BASIS_WAD)
    num, den = state.numerator, state.denominator
    dt = max(0, now_s - state.updated_at_s)
    if dt:
        w = half_life_decay_wad(dt, half_life_s)
        num = num * w // WAD + sample * dt
        den = den * w // WAD + dt * WAD
    ema = sample if den == 0 else num * WAD // den
    return sample, num, den, ema


def mark_price_e8(
    state: MarkBasis, index_e8: int, venue_e8: int, now_s: int, half_life_s: int
) -> int:
    """``MarginExchange._markPrice``: the robust mark price at ``now_s``."""
    ema = basis_now(state, index_e8, venue_e8, now_s, half_life_s)[3]
    scaled = WAD + ema
    basis_mark = index_e8 * scaled // WAD if scaled > 0 else 0
    return median3(index_e8, venue_e8, basis_mark)
