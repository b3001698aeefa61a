"""The input of ``liqsim stress``: a trader's book, read from a positions file.

The positions file (TOML, see ``scenarios/positions_example.toml``) is read with the same
validated schema loader as scenarios (:mod:`sim.scenario.loader`): :class:`PositionsFile`,
:class:`AccountEntry` and :class:`PositionEntry` declare every key; unknown keys, wrong types
and impossible values raise :class:`PositionsError` naming the file, the dotted field path and
the reason. ``[prices]`` is keyed by the scenario's market names, so it is loaded in a second
step with a schema built from those names (:func:`prices_schema`), and positions' ``market``
keys are checked against the same names.

The loaded file becomes a :class:`PositionsBook`, with exact :class:`~decimal.Decimal` amounts
(collateral and sizes go to the contracts' integer units without float rounding).
:func:`other_mode` gives the same book in the other margin mode. :func:`parse_moves` and
:func:`parse_markets` read the command-line moves and moved markets.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

from sim.scenario.loader import ConfigError, load, param, parse_toml, read_text_file
from sim.scenario.schema import (
    DEFAULT_SCENARIO,
    MAX_PRICE_USD,
    MAX_USD,
    MIN_PRICE_USD,
    Scenario,
    load_scenario,
)

__all__ = [
    "MAX_ACCOUNTS",
    "Account",
    "AccountEntry",
    "Position",
    "PositionEntry",
    "PositionsBook",
    "PositionsError",
    "PositionsFile",
    "StressInput",
    "load_positions",
    "other_mode",
    "parse_markets",
    "parse_moves",
    "prices_schema",
]

#: Most subaccounts a positions file may hold (each may split in the other margin mode, and
#: ``MarginExchange.MAX_SUBACCOUNTS`` is 16).
MAX_ACCOUNTS = 8


class PositionsError(ConfigError):
    """The positions file is invalid (names the file and the field)."""


# ------------------------------------------------------------------ the file's schema


@dataclass(frozen=True)
class PositionEntry:
    """One position (``[[accounts.positions]]``): ``size`` or ``notional_usd``, not both."""

    market: str = param(doc="Market name, one of the scenario's markets.")
    side: Literal["long", "short"] = param(doc="Direction of the position.")
    size: float | None = param(
        None, "Size of the position (give this or notional_usd).", unit="coins", gt=0, le=1e12
    )
    notional_usd: float | None = param(
        None, "Notional at the entry price (give this or size).", unit="USD", gt=0, le=MAX_USD
    )
    entry_price_usd: float | None = param(
        None,
        "Price the position is opened at (default: the current price); it then carries "
        "unrealized PnL at the current price.",
        unit="USD",
        ge=MIN_PRICE_USD,
        le=MAX_PRICE_USD,
    )

    def validate(self) -> None:
        if (self.size is None) == (self.notional_usd is None):
            raise ConfigError("", "give exactly one of size (coins) or notional_usd")


@dataclass(frozen=True)
class AccountEntry:
    """One subaccount (``[[accounts]]``)."""

    mode: Literal["cross", "isolated"] = param(
        doc="Margin mode: CROSS (the positions share the collateral) or ISOLATED (one position)."
    )
    collateral_usd: float = param(doc="Collateral deposited.", unit="USD", gt=0, le=MAX_USD)
    positions: tuple[PositionEntry, ...] = param(doc="The subaccount's positions.")
    name: str = param("", "Label of the subaccount in the tables.")

    def validate(self) -> None:
        if not self.positions:
            raise ConfigError("positions", "at least one [[accounts.positions]] table is required")
        if self.mode == "isolated" and len(self.positions) != 1:
            raise ConfigError(
                "positions",
                f"an isolated subaccount holds exactly one position, got {len(self.positions)}",
            )
        seen: set[str] = set()
        for j, p in enumerate(self.positions):
            if p.market in seen:
                raise ConfigError(
                    f"positions.{j}.market", f"{p.market} appears twice in one subaccount"
                )
            seen.add(p.market)


@dataclass(frozen=True)
class PositionsFile:
    """A positions file, except ``[prices]`` (see :func:`prices_schema`)."""

    accounts: tuple[AccountEntry, ...] = param(doc="The subaccounts, one table each.")
    name: str = param("", "Short name of the book.")
    description: str = param("", "What the book is.")
    scenario: str | None = param(
        None,
        "Scenario file the markets come from, relative to the positions file "
        "(default: scenarios/default.toml).",
    )

    def validate(self) -> None:
        if self.scenario is not None and (not self.scenario or "\x00" in self.scenario):
            raise ConfigError(
                "scenario",
                "must name a scenario file (omit the key for scenarios/default.toml), got "
                f"{self.scenario!r}",
            )
        if not self.accounts:
            raise ConfigError("accounts", "at least one [[accounts]] table is required")
        if len(self.accounts) > MAX_ACCOUNTS:
            raise ConfigError(
                "accounts",
                f"at most {MAX_ACCOUNTS} subaccounts (16 in the other mode), "
                f"got {len(self.accounts)}",
            )

    def check_markets(self, names: tuple[str, ...]) -> None:
        """Every position's market is one of ``names`` (the scenario's markets)."""
        for i, a in enumerate(self.accounts):
            for j, p in enumerate(a.positions):
                if p.market not in names:
                    raise ConfigError(
                        f"accounts.{i}.positions.{j}.market",
                        f"no market named {p.market!r} (markets: {', '.join(names)})",
                    )


@cache
def prices_schema(names: tuple[str, ...]) -> type:
    """The schema of ``[prices]`` for markets ``names``: one optional price per market."""
    return dataclasses.make_dataclass(
        "Prices",
        [
            (
                n,
                float | None,
                param(
                    None,
                    f"Current {n} price (default: the scenario's).",
                    ge=MIN_PRICE_USD,
                    le=MAX_PRICE_USD,
                ),
            )
            for n in names
        ],
        frozen=True,
    )


# ------------------------------------------------------------------ the book


@dataclass(frozen=True)
class Position:
    market: str
    side: int  # +1 long, -1 short
    size: Decimal | None  # coins
    notional_usd: Decimal | None
    entry_price_usd: float | None


@dataclass(frozen=True)
class Account:
    mode: str
    collateral_usd: Decimal
    positions: tuple[Position, ...]
    name: str = ""


@dataclass(frozen=True)
class PositionsBook:
    """A trader's subaccounts and their positions, as given ("as given") or converted to the
    other margin mode ("other mode")."""

    name: str
    accounts: tuple[Account, ...]

    @property
    def mode(self) -> str:
        modes = {a.mode for a in self.accounts}
        return modes.pop() if len(modes) == 1 else "mixed"


@dataclass(frozen=True)
class StressInput:
    path: Path
    scenario: Scenario
    prices: dict[str, float]
    book: PositionsBook


def _exact(x: float | None) -> Decimal | None:
    """The decimal a number of the file reads as (``12000`` -> ``Decimal('12000')``)."""
    if x is None:
        return None
    return Decimal(int(x)) if x.is_integer() else Decimal(str(x))


def _book(spec: PositionsFile) -> PositionsBook:
    return PositionsBook(
        "as given",
        tuple(
            Account(
                a.mode,
                _exact(a.collateral_usd),  # type: ignore[arg-type]
                tuple(
                    Position(
                        p.market,
                        1 if p.side == "long" else -1,
                        _exact(p.size),
                        _exact(p.notional_usd),
                        p.entry_price_usd,
                    )
                    for p in a.positions
                ),
                a.name,
            )
            for a in spec.accounts
        ),
    )


def _read_toml(path: Path) -> dict:
    return parse_toml(read_text_file(path, "positions file"))


def load_positions(path: str | Path) -> StressInput:
    """Read and validate a positions file, and the scenario its markets come from."""
    path = Path(path)
    try:
        raw = _read_toml(path)
        spec = load(PositionsFile, {k: v for k, v in raw.items() if k != "prices"})
    except ConfigError as err:
        raise err.replace(PositionsError, source=str(path)) from None
    if spec.scenario is None:
        scenario = load_scenario(DEFAULT_SCENARIO)
    else:
        sp = Path(spec.scenario)
        scenario = load_scenario(sp if sp.is_absolute() else path.parent / sp)
    names = scenario.market_names
    try:
        try:
            given = load(prices_schema(names), raw.get("prices", {}), "prices")
        except ConfigError as err:
            if not err.unknown_key:
                raise
            market = err.path.split(".", 1)[1]
            raise ConfigError(
                err.path, f"no market named {market!r} (markets: {', '.join(names)})"
            ) from None
        spec.check_markets(names)
    except ConfigError as err:
        raise err.replace(PositionsError, source=str(path)) from None
    prices = {m.name: m.initial_price_usd for m in scenario.markets}
    prices.update({n: getattr(given, n) for n in names if getattr(given, n) is not None})
    return StressInput(path, scenario, prices, _book(spec))


# ------------------------------------------------------------------ the other margin mode


def _im_usd(p: Position, scenario: Scenario, prices: dict[str, float]) -> Decimal:
    m = scenario.markets[scenario.market_index(p.market)]
    price = Decimal(str(prices[p.market]))
    notional = p.notional_usd if p.notional_usd is not None else p.size * price  # type: ignore[operator]
    return notional * Decimal(str(m.initial_margin))


def other_mode(book: PositionsBook, scenario: Scenario, prices: dict[str, float]) -> PositionsBook:
    """The same positions in the other margin mode:

    * a CROSS subaccount becomes one ISOLATED subaccount per position, its collateral split in
      proportion to the positions' initial-margin requirements at the current prices;
    * ISOLATED subaccounts are merged into CROSS subaccounts (one position per market each),
      with the sum of their collateral.
    """
    out: list[Account] = []
    crosses: list[list] = []  # [collateral, positions, names]
    for a in book.accounts:
        if a.mode == "cross":
            ims = [_im_usd(p, scenario, prices) for p in a.positions]
            total = sum(ims)
            shares = [
                (a.collateral_usd * im / total).quantize(
                    Decimal("0.000001"), rounding="ROUND_FLOOR"
                )
                for im in ims
            ]
            shares[0] += a.collateral_usd - sum(shares)
            out += [
                Account("isolated", s, (p,), f"{a.name or 'cross'}:{p.market}")
                for s, p in zip(shares, a.positions, strict=True)
            ]
            continue
        p = a.positions[0]
        for c in crosses:
            if all(q.market != p.market for q in c[1]):
                c[0] += a.collateral_usd
                c[1].append(p)
                c[2].append(a.name or p.market)
                break
        else:
            crosses.append([a.collateral_usd, [p], [a.name or p.market]])
    out += [Account("cross", c[0], tuple(c[1]), "+".join(c[2])) for c in crosses]
    return PositionsBook("other mode", tuple(out))


# ------------------------------------------------------------------ command-line arguments


def parse_moves(text: str) -> list[float]:
    """'-5%,-10%' or '-0.05,-0.1' -> [-0.05, -0.1]."""
    moves = []
    for part in text.split(","):
        t = part.strip()
        if not t:
            continue
        try:
            x = float(t[:-1]) / 100 if t.endswith("%") else float(t)
        except ValueError:
            raise ConfigError("--moves", f"not a move: {t!r} (use e.g. -10% or -0.1)") from None
        if not -1 < x < 10 or x == 0 or math.isnan(x):
            raise ConfigError("--moves", f"a move must be non-zero and above -100%, got {t!r}")
        moves.append(x)
    if not moves:
        raise ConfigError("--moves", "no moves given")
    return sorted(set(moves), key=abs)


def parse_markets(text: str) -> list[str] | None:
    """'all' -> None (every market of the book); 'ETH,BTC' -> ['ETH', 'BTC']."""
    t = text.strip()
    if not t or t.lower() == "all":
        return None
    return [m.strip() for m in t.split(",") if m.strip()]
