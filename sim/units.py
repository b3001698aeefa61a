"""The one place liqsim's units are defined, and their conversions.

On the chain boundary every amount is a Python int in the contracts' units:

============  ===========  ==========================================
quantity      scale        name suffix
============  ===========  ==========================================
collateral    1e6 / USD    ``_units`` (the USDC-like token, 6 decimals)
base size     1e18 / coin  ``size_base`` (18 decimals, signed)
price         1e8 / USD    ``_e8`` (Chainlink-style 8 decimals)
fraction      1e6          ``_ppm`` (parts per million)
gas price     1e9 wei      ``_gwei`` (scenario) / ``_wei`` (chain)
ether         1e18 wei     ``_wei``
============  ===========  ==========================================

Floats appear only in scenarios (USD, gwei, fractions) and in analysis. Converting a float to
chain units goes through the functions below; rounding at the contracts is against the account
(see docs/contracts.md).
"""

from __future__ import annotations

USD = 10**6  # collateral units per US dollar
BASE = 10**18  # base-size units per whole coin
PRICE_SCALE = 10**8  # price units (_e8) per US dollar
PPM = 10**6  # parts per million
GWEI = 10**9  # wei per gwei
ETHER = 10**18  # wei per ether
NOTIONAL_SCALE = BASE * PRICE_SCALE // USD  # size_base * price_e8 / NOTIONAL_SCALE = units (1e20)


def usd_to_units(usd: float) -> int:
    """Collateral units of ``usd`` dollars (truncated toward zero, as ``int``)."""
    return int(usd * USD)


def units_to_usd(units: int) -> float:
    """Dollars of ``units`` collateral units (analysis only)."""
    return units / USD


def gwei_to_wei(gwei: float) -> int:
    """Wei of ``gwei`` (truncated toward zero, as ``int``)."""
    return int(gwei * GWEI)


def wei_to_gwei(wei: int) -> float:
    """Gwei of ``wei`` (analysis only)."""
    return wei / GWEI


def fraction_to_ppm(fraction: float) -> int:
    """Parts per million of a fraction (rounded to nearest)."""
    return round(fraction * PPM)


def price_to_e8(price_usd: float) -> int:
    """A USD price in the contracts' 8-decimal units (rounded to nearest)."""
    return round(price_usd * PRICE_SCALE)


def notional_units(size_base: int, price_e8: int) -> int:
    """Collateral units of ``|size_base|`` at ``price_e8`` (floored)."""
    return abs(size_base) * price_e8 // NOTIONAL_SCALE
