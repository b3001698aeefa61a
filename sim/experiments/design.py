"""Scenario parameters as the axes of an experiment design (``liqsim phase``,
``liqsim sensitivity``).

A parameter is named by the dotted path ``--set`` uses (``background.urgent_utilization``,
``markets.0.external_depth_usd``). ``markets.*.NAME`` stands for the same value in every market
of the scenario (one factor that moves all markets together), e.g.
``markets.*.impact_half_life_blocks``.
"""

from __future__ import annotations

import math
from typing import Any

from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario

ALL_MARKETS = "markets.*."


def concrete_paths(scenario: Scenario, path: str) -> list[str]:
    """``path`` itself, or one path per market for ``markets.*.NAME``."""
    if path.startswith(ALL_MARKETS):
        rest = path[len(ALL_MARKETS) :]
        return [f"markets.{i}.{rest}" for i in range(len(scenario.markets))]
    return [path]


def overrides(scenario: Scenario, path: str, value: str) -> list[str]:
    """The ``--set`` overrides that give ``path`` the value ``value`` (text)."""
    return [f"{p}={value}" for p in concrete_paths(scenario, path)]


def value_at(data: Any, path: str) -> Any:
    """The value at a concrete dotted path of a scenario's plain data."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list | tuple) else data[part]
    return data


def resolved_value(scenario: Scenario, path: str) -> Any:
    """The resolved (typed) value of ``path`` in ``scenario`` (the first market's for
    ``markets.*.NAME``)."""
    return value_at(scenario.to_dict(), concrete_paths(scenario, path)[0])


def parse_number(text: str, flag: str, what: str) -> float:
    """A finite number, or a :class:`ConfigError` naming ``flag``."""
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        raise ConfigError(flag, f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ConfigError(flag, f"{what}: {text.strip()!r} is not a finite number")
    return v


def parse_values(text: str, flag: str) -> tuple[str, list[str]]:
    """``"path=v1,v2"`` -> ``("path", ["v1", "v2"])``; errors name ``flag``."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(flag, f"expected PATH=V1,V2,..., got {text!r}")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not vals:
        raise ConfigError(flag, f"no values for {path!r} in {text!r}")
    if len(set(vals)) != len(vals):
        raise ConfigError(flag, f"duplicate values for {path!r} in {text!r}")
    return path, vals


def check_override(scenario: Scenario, texts: list[str], flag: str) -> Scenario:
    """``scenario`` with ``texts`` applied; an invalid value is a :class:`ConfigError` naming
    ``flag`` and the parameter."""
    try:
        return scenario.with_overrides(texts)
    except ConfigError as err:
        raise ConfigError(flag, err.body) from None
