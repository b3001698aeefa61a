"""``liqsim stress``: a trader's own positions on the real contracts under adverse moves.

The positions file (TOML, see ``scenarios/positions_example.toml``) lists the trader's
subaccounts: margin mode, collateral, and positions (market, side, size in coins or notional in
USD, optional entry price). Markets (margins, penalty, venue depth, insurance fund) come from a
scenario file (``scenario = "..."``, default: the default scenario); current prices from
``[prices]`` (default: the scenario's initial prices).

For every move (and for "no move") a fresh chain is deployed, the book is opened exactly as
given (at each position's entry price, then the markets are set to the current prices), the
moved markets' oracle **and** venue are set to ``current x (1 + move)`` (the venue by a large
external account's trade, as an arbitrageur would), and every liquidatable subaccount is
liquidated (most under water first) by a liquidator account. Reported per move and subaccount:
equity before liquidation, maintenance requirement, whether it was liquidated, penalty, bad
debt, and equity left. Per position: the contract's ``liquidationPriceE8`` view (other prices
held), and the move of the stressed markets at which its subaccount becomes liquidatable
(solved from the contract's health: ``E0 + A x = MM0 + B x``). The same book is also run in the
other margin mode:

* a CROSS subaccount becomes one ISOLATED subaccount per position, its collateral split in
  proportion to the positions' initial-margin requirements at the current prices;
* ISOLATED subaccounts are merged into CROSS subaccounts (one position per market each), with
  the sum of their collateral.

All amounts on the chain boundary are integers in the contracts' units (collateral 6 decimals,
sizes 18 decimals, prices 8 decimals); floats only in the tables.
"""

from __future__ import annotations

import math
import shutil
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from math import isqrt
from pathlib import Path
from typing import Any

import pandas as pd

from sim.experiments import plotting
from sim.experiments.common import markdown_table
from sim.scenario.loader import ConfigError
from sim.scenario.schema import Scenario, load_scenario

E8 = 10**8
BASE = 10**18
USD = 10**6
PPM = 10**6
DEFAULT_MOVES = (-0.05, -0.10, -0.15, -0.20, -0.25, -0.30)
DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "default.toml"

DEPLOYER, REPORTER, TRADER, WHALE, LIQUIDATOR = 0, 1, 2, 3, 4
EXACT_COLUMNS = ("size_base", "p0_e8", "equity_units", "maintenance_units", "liquidation_price_e8")


class PositionsError(ConfigError):
    """The positions file is invalid (names the file and the field)."""


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
class Book:
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
    book: Book


def _dec(value: Any, where: str, source: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PositionsError(where, f"must be a number, got {value!r}", source=source)
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise PositionsError(where, f"must be a number, got {value!r}", source=source) from None
    if not d.is_finite() or d <= 0:
        raise PositionsError(where, f"must be > 0, got {value!r}", source=source)
    return d


def _check_keys(table: dict, allowed: set[str], where: str, source: str) -> None:
    for k in table:
        if k not in allowed:
            raise PositionsError(
                f"{where}.{k}" if where else k,
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
                source=source,
            )


def load_positions(path: str | Path) -> StressInput:
    """Read and validate a positions file."""
    path = Path(path)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PositionsError("", "positions file not found", source=source) from None
    except tomllib.TOMLDecodeError as err:
        raise PositionsError("", f"invalid TOML: {err}", source=source) from None
    _check_keys(raw, {"name", "description", "scenario", "prices", "accounts"}, "", source)
    scen = raw.get("scenario")
    if scen is None:
        scenario = load_scenario(DEFAULT_SCENARIO)
    else:
        if not isinstance(scen, str):
            raise PositionsError("scenario", f"must be a path string, got {scen!r}", source=source)
        sp = Path(scen)
        scenario = load_scenario(sp if sp.is_absolute() else path.parent / sp)
    names = scenario.market_names
    prices = {m.name: m.initial_price_usd for m in scenario.markets}
    given = raw.get("prices", {})
    if not isinstance(given, dict):
        raise PositionsError("prices", "must be a table of market = price", source=source)
    for k, v in given.items():
        if k not in names:
            raise PositionsError(
                f"prices.{k}", f"no market named {k!r} (markets: {', '.join(names)})", source=source
            )
        prices[k] = float(_dec(v, f"prices.{k}", source))
    accounts_raw = raw.get("accounts")
    if not isinstance(accounts_raw, list) or not accounts_raw:
        raise PositionsError(
            "accounts", "at least one [[accounts]] table is required", source=source
        )
    if len(accounts_raw) > 8:
        raise PositionsError(
            "accounts",
            f"at most 8 subaccounts (16 in the other mode), got {len(accounts_raw)}",
            source=source,
        )
    accounts = []
    for i, a in enumerate(accounts_raw):
        w = f"accounts.{i}"
        if not isinstance(a, dict):
            raise PositionsError(w, "must be a table", source=source)
        _check_keys(a, {"name", "mode", "collateral_usd", "positions"}, w, source)
        mode = a.get("mode")
        if mode not in ("cross", "isolated"):
            raise PositionsError(
                f"{w}.mode", f"must be 'cross' or 'isolated', got {mode!r}", source=source
            )
        if "collateral_usd" not in a:
            raise PositionsError(f"{w}.collateral_usd", "required", source=source)
        collateral = _dec(a["collateral_usd"], f"{w}.collateral_usd", source)
        plist = a.get("positions")
        if not isinstance(plist, list) or not plist:
            raise PositionsError(
                f"{w}.positions",
                "at least one [[accounts.positions]] table is required",
                source=source,
            )
        if mode == "isolated" and len(plist) != 1:
            raise PositionsError(
                f"{w}.positions",
                f"an isolated subaccount holds exactly one position, got {len(plist)}",
                source=source,
            )
        positions = []
        seen: set[str] = set()
        for j, p in enumerate(plist):
            pw = f"{w}.positions.{j}"
            if not isinstance(p, dict):
                raise PositionsError(pw, "must be a table", source=source)
            _check_keys(
                p, {"market", "side", "size", "notional_usd", "entry_price_usd"}, pw, source
            )
            market = p.get("market")
            if market not in names:
                raise PositionsError(
                    f"{pw}.market",
                    f"no market named {market!r} (markets: {', '.join(names)})",
                    source=source,
                )
            if market in seen:
                raise PositionsError(
                    f"{pw}.market", f"{market} appears twice in one subaccount", source=source
                )
            seen.add(market)
            side = p.get("side")
            if side not in ("long", "short"):
                raise PositionsError(
                    f"{pw}.side", f"must be 'long' or 'short', got {side!r}", source=source
                )
            if ("size" in p) == ("notional_usd" in p):
                raise PositionsError(
                    pw, "give exactly one of size (coins) or notional_usd", source=source
                )
            size = _dec(p["size"], f"{pw}.size", source) if "size" in p else None
            notional = (
                _dec(p["notional_usd"], f"{pw}.notional_usd", source)
                if "notional_usd" in p
                else None
            )
            entry = (
                float(_dec(p["entry_price_usd"], f"{pw}.entry_price_usd", source))
                if "entry_price_usd" in p
                else None
            )
            positions.append(Position(market, 1 if side == "long" else -1, size, notional, entry))
        accounts.append(Account(mode, collateral, tuple(positions), str(a.get("name", ""))))
    return StressInput(path, scenario, prices, Book("as given", tuple(accounts)))


def _im_usd(p: Position, scenario: Scenario, prices: dict[str, float]) -> Decimal:
    m = scenario.markets[scenario.market_index(p.market)]
    price = Decimal(str(prices[p.market]))
    notional = p.notional_usd if p.notional_usd is not None else p.size * price  # type: ignore[operator]
    return notional * Decimal(str(m.initial_margin))


def other_mode(book: Book, scenario: Scenario, prices: dict[str, float]) -> Book:
    """The same positions in the other margin mode (see the module docstring)."""
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
    return Book("other mode", tuple(out))


# ------------------------------------------------------------------ the chain


class StressChain:
    """A fresh deployment of the scenario's markets with the book opened on it."""

    def __init__(self, inp: StressInput, book: Book):
        from sim.chain.events import EventDecoder
        from sim.chain.session import ChainSession
        from sim.exchange.client import deploy_system
        from sim.exchange.from_scenario import system_config

        self.inp, self.book = inp, book
        self.scenario = inp.scenario
        self.names = list(self.scenario.market_names)
        self.session = ChainSession(
            seed=0, n_accounts=5, block_time_s=self.scenario.run.block_time_s
        )
        current = [self._e8(inp.prices[n]) for n in self.names]
        self.system = deploy_system(self.session, system_config(self.scenario, current))
        self.decoder = EventDecoder()
        self.trader = self.session.accounts[TRADER].address
        self.whale = self.session.accounts[WHALE].address
        self.liquidator = self.session.accounts[LIQUIDATOR].address
        self.current_e8 = dict(zip(self.names, current, strict=True))
        self.error = ""
        depth = sum(int(m.venue_depth_usd * USD) for m in self.scenario.markets)
        s = self.system
        s.send_batch(
            s.fund_trader_calls(self.whale, 4 * depth)
            + s.open_account_calls(self.whale, 0, "cross", 0, 4 * depth)
        )
        self._open()

    @staticmethod
    def _e8(price_usd: float) -> int:
        return round(Decimal(str(price_usd)) * E8)

    def market(self, name: str) -> int:
        return self.names.index(name)

    def _venue_delta(self, m: int, price_e8: int) -> int:
        v = self.system.venues[m].functions
        base, quote = v.baseReserve().call(), v.quoteReserve().call()
        k = base * quote
        new_quote = isqrt(k * price_e8 // 10**20)
        return base - k // new_quote

    def set_prices(self, prices_e8: dict[str, int]) -> None:
        """Write each market's oracle price and trade its venue to it (all in one block)."""
        s = self.system
        calls = []
        for name, p in prices_e8.items():
            m = self.market(name)
            calls.append(s.report_call(m, p))
            delta = self._venue_delta(m, p)
            if delta != 0:
                calls.append(s.trade_call(self.whale, 0, m, delta))
        s.send_batch(calls)

    def _size(self, p: Position, price_e8: int) -> int:
        if p.size is not None:
            size = int(p.size * BASE)
        else:
            size = int(p.notional_usd * USD * 10**20 / price_e8)  # type: ignore[operator]
        if size == 0:
            raise PositionsError(
                "positions", f"a {p.market} position rounds to size 0", source=str(self.inp.path)
            )
        return p.side * size

    def _open(self) -> None:
        from sim.exchange.client import TxFailed

        s = self.system
        total = sum(int(a.collateral_usd * USD) for a in self.book.accounts)
        calls = s.fund_trader_calls(self.trader, total)
        for i, a in enumerate(self.book.accounts):
            market = self.market(a.positions[0].market) if a.mode == "isolated" else 0
            calls += s.open_account_calls(
                self.trader, i, a.mode, market, int(a.collateral_usd * USD)
            )
        s.send_batch(calls)
        self.sizes: dict[tuple[int, str], int] = {}
        for i, a in enumerate(self.book.accounts):
            for p in a.positions:
                price = (
                    self._e8(p.entry_price_usd)
                    if p.entry_price_usd is not None
                    else self.current_e8[p.market]
                )
                if s.exchange.functions.indexPriceE8(self.market(p.market)).call() != price:
                    self.set_prices({p.market: price})
                size = self._size(p, price)
                try:
                    s.send(s.trade_call(self.trader, i, self.market(p.market), size))
                except TxFailed as err:
                    raise PositionsError(
                        f"accounts.{i}",
                        f"cannot open {p.market} {'long' if size > 0 else 'short'} in the "
                        f"{self.book.name} book ({a.mode}, {a.collateral_usd:,} USD): {err.reason}",
                        source=str(self.inp.path),
                    ) from None
                self.sizes[(i, p.market)] = size
        self.set_prices(dict(self.current_e8))

    # -- reading --------------------------------------------------------------------------------

    def health(self, i: int) -> dict[str, Any]:
        return self.system.health(self.trader, i)

    def position_rows(self) -> list[dict[str, Any]]:
        """Per position: contract figures at the current prices and the liquidation move."""
        ex = self.system.exchange.functions
        rows = []
        for i, a in enumerate(self.book.accounts):
            h = self.health(i)
            # E(x) = E0 + A x and MM(x) = MM0 + B x when every market of the account moves by x
            a_units = b_units = 0.0
            for p in a.positions:
                m = self.market(p.market)
                size = ex.getPosition(self.trader, i, m).call()[0]
                price = ex.marginPriceE8(m).call()
                mm_ppm = self.system.config.markets[m].maintenance_margin_ppm
                a_units += size * price / 10**20
                b_units += abs(size) * price / 10**20 * mm_ppm / PPM
            x_all = (
                (h["maintenance_requirement"] - h["equity"]) / (a_units - b_units)
                if a_units != b_units
                else math.inf
            )
            for p in a.positions:
                m = self.market(p.market)
                pos = ex.getPosition(self.trader, i, m).call()
                p0 = ex.marginPriceE8(m).call()
                mm_ppm = self.system.config.markets[m].maintenance_margin_ppm
                liq = ex.liquidationPriceE8(self.trader, i, m).call()
                size = pos[0]
                denom = size / 10**20 * p0 * (1 - (1 if size > 0 else -1) * mm_ppm / PPM)
                x_one = (h["maintenance_requirement"] - h["equity"]) / denom if denom else math.inf
                rows.append(
                    {
                        "book": self.book.name,
                        "book_mode": self.book.mode,
                        "subaccount": i,
                        "account_name": a.name,
                        "mode": a.mode,
                        "market": p.market,
                        "side": "long" if size > 0 else "short",
                        "size": size / BASE,
                        "size_base": size,
                        "entry_cost_usd": pos[1] / USD,
                        "price_usd": p0 / E8,
                        "notional_usd": abs(size) * p0 / 10**20 / USD,
                        "collateral_usd": float(a.collateral_usd),
                        "equity_usd": h["equity"] / USD,
                        "maintenance_usd": h["maintenance_requirement"] / USD,
                        "liquidation_price_usd": liq / E8,
                        "liquidation_move_this_market": x_one,
                        "liquidation_move_all_markets": x_all,
                        "p0_e8": p0,
                        "equity_units": h["equity"],
                        "maintenance_units": h["maintenance_requirement"],
                        "maintenance_margin_ppm": mm_ppm,
                        "liquidation_price_e8": liq,
                    }
                )
        return rows

    def stress(self, move: float, markets: list[str]) -> list[dict[str, Any]]:
        """Apply ``move`` to ``markets`` (oracle and venue), liquidate what is liquidatable."""
        target = {
            n: (round(self.current_e8[n] * (1 + move)) if n in markets else self.current_e8[n])
            for n in self.names
        }
        self.set_prices(target)
        before = {i: self.health(i) for i in range(len(self.book.accounts))}
        order = sorted(
            (i for i, h in before.items() if h["liquidatable"]),
            key=lambda i: before[i]["equity"] / max(before[i]["maintenance_requirement"], 1),
        )
        liquidations: dict[int, dict[str, Any]] = {}
        for rank, i in enumerate(order, start=1):
            n_pos = len(self.book.accounts[i].positions)
            mined = self.system.try_send(
                self.system.liquidate_call(self.liquidator, self.trader, i, n_pos)
            )
            ev = next(
                (e for e in self.decoder.decode_all(mined.logs) if e.name == "Liquidated"), None
            )
            liquidations[i] = {
                "rank": rank,
                "status": mined.status,
                "event": ev.args if ev is not None else {},
            }
        rows = []
        for i, a in enumerate(self.book.accounts):
            h0 = before[i]
            liq = liquidations.get(i)
            ev = liq["event"] if liq else {}
            done = bool(liq and liq["status"] == 1)
            after = (
                self.system.exchange.functions.getAccount(self.trader, i).call()[3]
                if done
                else h0["equity"]
            )
            rows.append(
                {
                    "book": self.book.name,
                    "book_mode": self.book.mode,
                    "move": move,
                    "moved_markets": ",".join(markets),
                    "subaccount": i,
                    "account_name": a.name,
                    "mode": a.mode,
                    "markets": ",".join(p.market for p in a.positions),
                    "equity_before_usd": h0["equity"] / USD,
                    "maintenance_usd": h0["maintenance_requirement"] / USD,
                    "health": h0["equity"] / h0["maintenance_requirement"]
                    if h0["maintenance_requirement"]
                    else math.inf,
                    "liquidatable": bool(h0["liquidatable"]),
                    "liquidated": done,
                    "liquidation_order": liq["rank"] if liq else 0,
                    "notional_closed_usd": ev.get("notionalClosed", 0) / USD,
                    "penalty_usd": ev.get("penaltyPaid", 0) / USD,
                    "bad_debt_usd": ev.get("badDebt", 0) / USD,
                    "insurance_cover_usd": ev.get("insuranceCover", 0) / USD,
                    "equity_after_usd": after / USD,
                }
            )
        return rows


# ------------------------------------------------------------------ the experiment


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


@dataclass
class StressResult:
    folder: Path
    positions: pd.DataFrame
    stress: pd.DataFrame
    moves: pd.DataFrame
    first: pd.DataFrame
    markets: list[str]
    input: StressInput
    notes: list[str] = field(default_factory=list)


def _book_markets(book: Book) -> list[str]:
    return sorted({p.market for a in book.accounts for p in a.positions})


def run_stress(
    path: str | Path, moves: list[float], markets: list[str] | None, out: str | Path, argv: str = ""
) -> StressResult:
    inp = load_positions(path)
    names = list(inp.scenario.market_names)
    book = inp.book
    if markets is None:
        markets = [n for n in names if n in _book_markets(book)]
    for m in markets:
        if m not in names:
            raise ConfigError("--markets", f"no market named {m!r} (markets: {', '.join(names)})")
    alt = other_mode(book, inp.scenario, inp.prices)
    notes: list[str] = []
    position_rows, stress_rows = [], []
    for b in (book, alt):
        try:
            chain = StressChain(inp, b)
        except PositionsError as err:
            if b is book:
                raise
            notes.append(f"The other-mode book cannot be opened: {err.reason}")
            continue
        position_rows += chain.position_rows()
        stress_rows += chain.stress(0.0, markets)  # no move: only what is liquidatable already
        for move in moves:
            stress_rows += StressChain(inp, b).stress(move, markets)
    positions = pd.DataFrame(position_rows)
    for col in EXACT_COLUMNS:  # exact contract integers (beyond int64): kept as decimal strings
        positions[col] = positions[col].map(str)
    stress = pd.DataFrame(stress_rows)
    moves_df = (
        stress.groupby(["book", "book_mode", "move"], sort=False)
        .agg(
            equity_before_usd=("equity_before_usd", "sum"),
            equity_after_usd=("equity_after_usd", "sum"),
            liquidatable_subaccounts=("liquidatable", "sum"),
            liquidated_subaccounts=("liquidated", "sum"),
            notional_closed_usd=("notional_closed_usd", "sum"),
            penalty_usd=("penalty_usd", "sum"),
            bad_debt_usd=("bad_debt_usd", "sum"),
        )
        .reset_index()
    )
    first = _first_liquidated(stress)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plots").mkdir(exist_ok=True)
    shutil.copyfile(inp.path, folder / "positions.toml")
    (folder / "scenario.toml").write_text(inp.scenario.to_toml())
    for name, df in (
        ("positions", positions),
        ("stress", stress),
        ("moves", moves_df),
        ("first_liquidated", first),
    ):
        df.to_csv(folder / f"{name}.csv", index=False)
        df.to_parquet(folder / f"{name}.parquet", index=False)
    moved = "all markets" if len(markets) > 1 else markets[0]
    title = f"Stress of {inp.path.name}: {moved} moved together"
    plotting.stress_plot(moves_df, folder / "plots" / "stress.png", title)
    res = StressResult(folder, positions, stress, moves_df, first, markets, inp, notes)
    (folder / "report.md").write_text(report_text(res, argv))
    return res


def _first_liquidated(stress: pd.DataFrame) -> pd.DataFrame:
    """Per book and subaccount: the smallest move at which it is liquidated (NaN: never), in the
    order they go."""
    rows = []
    for (book, sub), g in stress.groupby(["book", "subaccount"], sort=False):
        hit = g[g["liquidated"]]
        first = hit.loc[hit["move"].abs().idxmin()] if not hit.empty else None
        rows.append(
            {
                "book": book,
                "subaccount": sub,
                "mode": g["mode"].iloc[0],
                "markets": g["markets"].iloc[0],
                "account_name": g["account_name"].iloc[0],
                "first_liquidated_move": first["move"] if first is not None else math.nan,
                "equity_after_usd": first["equity_after_usd"] if first is not None else math.nan,
                "bad_debt_usd": first["bad_debt_usd"] if first is not None else math.nan,
            }
        )
    df = pd.DataFrame(rows)
    df["_k"] = df["first_liquidated_move"].abs().fillna(math.inf)
    return (
        df.sort_values(["book", "_k", "subaccount"], kind="stable")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


def _pct(x: float) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "never"
    return f"{x:+.1%}"


def _usd(x: float) -> str:
    return f"{x:,.0f}"


def _positions_table(res: StressResult) -> pd.DataFrame:
    p = res.positions
    return pd.DataFrame(
        {
            "book": p["book"],
            "sub": p["subaccount"],
            "mode": p["mode"].str.upper(),
            "position": p["market"]
            + " "
            + p["side"]
            + " "
            + p["size"].map(lambda s: f"{abs(s):,.4g}"),
            "notional (USD)": p["notional_usd"].map(_usd),
            "collateral (USD)": p["collateral_usd"].map(_usd),
            "equity (USD)": p["equity_usd"].map(_usd),
            "price (USD)": p["price_usd"].map(lambda v: f"{v:,.2f}"),
            "liq. price (USD)": p["liquidation_price_usd"].map(
                lambda v: f"{v:,.2f}" if v > 0 else "none"
            ),
            "liq. move, this market": p["liquidation_move_this_market"].map(_pct),
            "liq. move, all its markets": p["liquidation_move_all_markets"].map(_pct),
        }
    )


def _moves_table(res: StressResult) -> pd.DataFrame:
    rows = []
    for move, g in res.stress.groupby("move", sort=False):
        row: dict[str, Any] = {
            "move": f"{move:+.0%}" if abs(move * 100 - round(move * 100)) < 1e-9 else f"{move:+.1%}"
        }
        for book, gb in g.groupby("book", sort=False):
            liq = gb[gb["liquidated"]]
            names = ", ".join(
                f"{r.subaccount}:{r.markets}"
                for r in liq.sort_values("liquidation_order").itertuples()
            )
            row[f"{book}: equity left"] = _usd(gb["equity_after_usd"].sum())
            row[f"{book}: liquidated (sub:markets)"] = names or "none"
            row[f"{book}: bad debt"] = _usd(gb["bad_debt_usd"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _first_table(res: StressResult) -> pd.DataFrame:
    f = res.first
    return pd.DataFrame(
        {
            "book": f["book"],
            "sub": f["subaccount"],
            "mode": f["mode"].str.upper(),
            "markets": f["markets"],
            "first liquidated at": f["first_liquidated_move"].map(
                lambda x: "already (no move)" if x == 0 else _pct(x)
            ),
            "equity left then (USD)": f["equity_after_usd"].map(
                lambda v: "" if math.isnan(v) else _usd(v)
            ),
        }
    )


def report_text(res: StressResult, argv: str = "") -> str:
    inp = res.input
    lines = [
        f"# Stress test of `{inp.path.name}`",
        "",
        f"Markets from scenario `{inp.scenario.name}`; current prices: "
        + ", ".join(f"{k} {v:,.2f}" for k, v in inp.prices.items())
        + ". "
        f"Moved together: {', '.join(res.markets)} (oracle and venue). Each move starts from the "
        "book as opened; "
        "liquidatable subaccounts are liquidated, most under water first.",
        "",
        *[f"**{n}**" for n in res.notes],
        "## Positions and liquidation prices (no move)",
        "",
        "Liquidation price: the contract view `liquidationPriceE8` (other markets' prices held). "
        "Liquidation move: the "
        "move of this market alone / of every market of the subaccount together at which the "
        "subaccount reaches its "
        "maintenance requirement.",
        "",
        markdown_table(_positions_table(res)),
        "",
        "## Per move",
        "",
        markdown_table(_moves_table(res)),
        "",
        "![stress](plots/stress.png)",
        "",
        "## What goes first",
        "",
        markdown_table(_first_table(res)),
        "",
    ]
    if argv:
        lines += ["```sh", argv, "```", ""]
    return "\n".join(lines)


def print_stress(res: StressResult) -> None:
    print(
        f"liqsim stress: {res.input.path} (markets from scenario '{res.input.scenario.name}'), "
        f"moves applied to {', '.join(res.markets)}"
    )
    for n in res.notes:
        print(f"note: {n}")
    for title, df in (
        ("Positions (no move)", _positions_table(res)),
        ("Per move", _moves_table(res)),
        ("Liquidated first", _first_table(res)),
    ):
        print(f"\n{title}")
        print(df.to_string(index=False))
