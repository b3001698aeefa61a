"""The exchange's fill arithmetic replicated exactly (``MarginMath`` and
``MarginExchange._applyFill``), for the account mirror's fills that carry no resulting state in
their events (auto-deleveraging and the backstop vault) and for tests."""

from __future__ import annotations


def mul_div_floor(a: int, b: int, d: int) -> int:
    """MarginMath.mulDivFloor: floor(a * b / d), toward -infinity."""
    return a * b // d


def mul_div_ceil_signed(a: int, b: int, d: int) -> int:
    """MarginMath.mulDivCeilSigned: ceil(a * b / d), toward +infinity."""
    return -(-a * b // d)


def apply_fill(size: int, basis: int, delta: int, quote: int) -> tuple[int, int, int]:
    """MarginExchange._applyFill: (new size, new open notional, realized PnL) of a position
    (``size``, cost basis ``basis``) filled by ``delta`` base for ``quote`` (+ paid)."""
    if size == 0 or (size > 0) == (delta > 0):
        return size + delta, basis + quote, 0
    closed = min(abs(delta), abs(size))
    quote_close = quote if closed == abs(delta) else mul_div_floor(quote, closed, abs(delta))
    basis_closed = mul_div_ceil_signed(basis, closed, abs(size))
    realized = -quote_close - basis_closed
    return size + delta, basis - basis_closed + (quote - quote_close), realized
