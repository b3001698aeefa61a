"""The contracts' configuration (:class:`SystemConfig`) that a scenario asks for: market risk
parameters in ppm, venue depths and fund sizes in collateral units."""

from __future__ import annotations

from collections.abc import Sequence

from sim.exchange.client import MarketSpec, SystemConfig
from sim.scenario.schema import Scenario
from sim.units import fraction_to_ppm, usd_to_units


def system_config(s: Scenario, initial_prices_e8: Sequence[int]) -> SystemConfig:
    """The contracts' configuration from a scenario."""
    ex = s.exchange
    markets = tuple(
        MarketSpec(
            name=m.name,
            initial_price_e8=initial_prices_e8[i],
            initial_margin_ppm=fraction_to_ppm(m.initial_margin),
            maintenance_margin_ppm=fraction_to_ppm(m.maintenance_margin),
            liquidation_penalty_ppm=fraction_to_ppm(m.liquidation_penalty),
            liquidator_share_ppm=fraction_to_ppm(m.liquidator_share),
            venue_depth_units=usd_to_units(m.venue_depth_usd),
            max_oracle_age_s=ex.max_oracle_age_s,
            margin_price=ex.margin_price,
            mark_half_life_s=ex.mark_basis_half_life_s,
            funding_period_s=ex.funding_period_s if ex.funding_enabled else 0,
            funding_cap_ppm=fraction_to_ppm(ex.funding_cap) if ex.funding_enabled else 0,
            partial_close_factor_ppm=fraction_to_ppm(m.partial_close_factor),
            full_close_notional_units=usd_to_units(m.full_close_notional_usd),
        )
        for i, m in enumerate(s.markets)
    )
    return SystemConfig(
        markets=markets,
        insurance_fund_units=usd_to_units(ex.insurance_fund_usd),
        counterparty_fund_units=usd_to_units(ex.counterparty_fund_usd),
        backstop_threshold_ppm=fraction_to_ppm(ex.backstop_threshold),
        adl_enabled=ex.adl_enabled,
    )
