"""The dashboard's inputs: each one a flat keyword of the live model and the scenario
parameter(s) it overrides (the same ``path=value`` overrides as ``liqsim run --set``).

An input left at the scenario's own value adds no override, so the dashboard's defaults are
the scenario file as given (``liqsim run SCENARIO --seed N`` runs the same blocks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario, check_price_path, check_seed, resolve_scenario

CRASH_SCALE = "crash_scale"  # not one path: it scales every market's crash_fall
MAX_CRASH_FALL = 0.95  # markets[].crash_fall must stay below 1


@dataclass(frozen=True)
class Input:
    """One input: its keyword, label, scenario path, widget and range (in shown units:
    shown value = scenario value / ``unit``)."""

    name: str
    label: str
    path: str
    kind: str  # "int", "float" or "select"
    low: float = 0
    high: float = 1
    step: float = 1
    values: tuple[str, ...] = ()
    unit: float = 1

    def current(self, scenario: Scenario) -> Any:
        """The input's value in ``scenario`` (shown units)."""
        if self.path == CRASH_SCALE:
            return 1.0
        value = _get(scenario, self.path)
        if self.kind == "select":
            return value
        shown = value / self.unit
        return round(shown) if self.kind == "int" else float(shown)

    def overrides(self, scenario: Scenario, value: Any) -> list[str]:
        """The ``path=value`` overrides that give ``scenario`` this input's ``value`` (none when
        it is the scenario's own)."""
        if value is None or value == self.current(scenario):
            return []
        if self.path == CRASH_SCALE:
            return [
                f"markets.{i}.crash_fall={min(MAX_CRASH_FALL, m.crash_fall * float(value))!r}"
                for i, m in enumerate(scenario.markets)
            ]
        if self.kind == "select":
            return [f"{self.path}={json.dumps(str(value))}"]
        raw = value * self.unit
        raw = round(raw) if self.kind == "int" else float(raw)
        return [f"{self.path}={raw!r}"]

    def widget(self, scenario: Scenario) -> dict[str, Any]:
        """The input as a SolaraViz ``model_params`` entry, its range widened to hold the
        scenario's own value, which lies on the slider's grid (a slider snaps its value to
        ``min + k * step`` when the page loads: off the grid, that would change the run)."""
        value = self.current(scenario)
        if self.kind == "select":
            values = list(self.values) if value in self.values else [value, *self.values]
            return {"type": "Select", "label": self.label, "value": value, "values": values}
        high = self.high
        if self.name == "crash_duration_blocks":
            high = scenario.run.blocks
        kind = "SliderInt" if self.kind == "int" else "SliderFloat"
        return {
            "type": kind,
            "label": self.label,
            "value": value,
            "min": _grid_floor(value, self.low, self.step),
            "max": max(high, value),
            "step": self.step,
        }


def _grid_floor(value: float, low: float, step: float) -> float:
    """The lowest ``value - k * step`` (k >= 0 whole) not below ``low`` (``value`` itself when
    it is below ``low``): a slider minimum that keeps ``value`` on the slider's grid."""
    if value <= low:
        return value
    lowest = value - step * math.floor((value - low) / step + 1e-9)
    return round(lowest, 10) + 0.0 if isinstance(value, float) else type(value)(round(lowest))


INPUTS: tuple[Input, ...] = (
    Input(
        "cross_fraction", "CROSS share of traders", "traders.cross_fraction", "float", 0, 1, 0.05
    ),
    Input("liquidators", "liquidators", "liquidators.count", "int", 0, 10, 1),
    Input(
        "liquidator_mode",
        "liquidator mode",
        "liquidators.mode",
        "select",
        values=("close", "takeover"),
    ),
    Input(
        "liquidator_capital_kusd",
        "liquidator capital (k USD, takeover)",
        "liquidators.capital_usd",
        "int",
        0,
        1000,
        10,
        unit=1000,
    ),
    Input(
        "gas_limit_mgas",
        "block gas limit (M gas)",
        "chain.block_gas_limit",
        "int",
        10,
        60,
        5,
        unit=1e6,
    ),
    Input(
        "urgent_utilization",
        "urgent demand (x gas limit)",
        "background.urgent_utilization",
        "float",
        0,
        2,
        0.1,
    ),
    Input(
        "crash_utilization",
        "crash demand (x gas limit)",
        "background.crash_utilization",
        "float",
        0,
        4,
        0.1,
    ),
    Input(
        "oracle_deviation",
        "oracle deviation threshold",
        "oracle.deviation_threshold",
        "float",
        0,
        0.05,
        0.0025,
    ),
    Input("oracle_heartbeat_s", "oracle heartbeat (s)", "oracle.heartbeat_s", "int", 60, 7200, 60),
    Input(CRASH_SCALE, "crash size (x the scenario's falls)", CRASH_SCALE, "float", 0, 3, 0.1),
    Input(
        "crash_duration_blocks",
        "crash duration (blocks)",
        "crash.duration_blocks",
        "int",
        1,
        600,
        5,
    ),
)
BY_NAME = {i.name: i for i in INPUTS}
SEED_WIDGET = {"type": "SliderInt", "label": "seed", "min": 0, "max": 99, "step": 1}


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def base_scenario(path: str | Path | None) -> Scenario:
    """The scenario file as given (``ConfigError`` naming the file or field when invalid)."""
    return resolve_scenario(path)


def overrides_for(scenario: Scenario, values: Mapping[str, Any]) -> list[str]:
    """The overrides the inputs ``values`` (by keyword) make to ``scenario``."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ConfigError("", f"unknown dashboard input(s): {', '.join(unknown)}")
    out: list[str] = []
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value}")
        out += BY_NAME[name].overrides(scenario, value)
    return out


def build_scenario(path: str | Path | None, seed: int, values: Mapping[str, Any]) -> Scenario:
    """A validated scenario: the file plus the inputs' overrides, checked for ``seed``'s price
    path (every error a :class:`ConfigError` naming the field)."""
    base = base_scenario(path)
    check_seed(seed, "seed")
    scenario = resolve_scenario(base, overrides_for(base, values))
    check_price_path(scenario, seed)
    return scenario


def model_params(path: str | Path | None, seed: int = 1) -> dict[str, Any]:
    """SolaraViz ``model_params``: the scenario file (fixed), the seed and every input at the
    scenario's own value."""
    base = base_scenario(path)
    params: dict[str, Any] = {
        "scenario": str(path) if path is not None else None,
        "seed": {**SEED_WIDGET, "value": seed, "max": max(99, seed)},
    }
    for inp in INPUTS:
        params[inp.name] = inp.widget(base)
    return params
