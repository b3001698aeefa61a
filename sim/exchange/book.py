"""An off-chain mirror of the exchange, rebuilt from its events (as a liquidation bot's indexer).

Agents read the chain as of the last block through this mirror: positions and collateral come
from ``Traded``, ``Deposited``, ``Withdrawn``, ``CollateralTransferred``, ``FundingSettled``,
``PositionLiquidated`` and ``Liquidated`` events; oracle prices from ``AnswerUpdated``; venue
reserves from ``Swap``. Health is recomputed in Python with the contract's exact integer math
and rounding (``MarginExchange._health``), so one block's view of 150 accounts costs microseconds
instead of an EVM call per account. Liquidators confirm their candidates with one ``healthOf``
call on chain before sending; a test checks this mirror against the chain after a run.

Funding is not mirrored (a liquidator confirms on chain); the scenarios that enable funding get
exact figures from the confirmation call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sim.chain.events import Event
from sim.exchange.fill_math import apply_fill
from sim.exchange.mark import MarkBasis
from sim.units import PPM

VALUE_SCALE = 10**20
CROSS, ISOLATED = 1, 2


def _set_position(acct: AccountState, market: int, size: int, basis: int) -> None:
    if size == 0:
        acct.positions.pop(market, None)
    else:
        acct.positions[market] = PositionState(size, basis)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class MarketRisk:
    """The risk parameters of one market (ppm), as listed on the exchange."""

    initial_margin_ppm: int
    maintenance_margin_ppm: int
    liquidation_penalty_ppm: int
    liquidator_share_ppm: int
    margin_price: int = 0  # IMarginExchange.PriceSource: 0 index, 1 mark, 2 venue
    mark_half_life_s: int = 0  # the mark price's basis EMA half-life


@dataclass
class PositionState:
    """A position: signed size (base units, 18 decimals) and signed cost basis (token units)."""

    size_base: int = 0
    open_notional_units: int = 0


@dataclass
class AccountState:
    """One (owner, subaccount) as the chain holds it."""

    owner: str
    subaccount: int
    mode: int  # 1 CROSS, 2 ISOLATED
    isolated_market: int
    collateral_units: int = 0
    positions: dict[int, PositionState] = field(default_factory=dict)
    deposited_units: int = 0  # cumulative deposits (incl. transfers in)
    withdrawn_units: int = 0  # cumulative withdrawals (incl. transfers out)
    liquidations: int = 0
    first_liquidatable_block: int | None = None  # start of the current liquidatable spell

    @property
    def key(self) -> tuple[str, int]:
        return (self.owner, self.subaccount)


@dataclass(frozen=True)
class Health:
    """Health at given prices, exact as on chain (funding excluded)."""

    equity_units: int
    initial_requirement_units: int
    maintenance_requirement_units: int
    notional_units: int

    @property
    def liquidatable(self) -> bool:
        return self.equity_units < self.maintenance_requirement_units

    @property
    def ratio(self) -> float:
        """equity / maintenance requirement (inf without positions)."""
        if self.maintenance_requirement_units == 0:
            return float("inf")
        return self.equity_units / self.maintenance_requirement_units


def position_value(size_base: int, price_e8: int) -> int:
    """Signed value in token units, rounded down (MarginMath.value)."""
    return size_base * price_e8 // VALUE_SCALE


def position_notional(size_base: int, price_e8: int) -> int:
    """|size| * price in token units, rounded up (MarginMath.notional)."""
    return _ceil_div(abs(size_base) * price_e8, VALUE_SCALE)


def health_of(
    account: AccountState, prices_e8: Sequence[int], risk: Sequence[MarketRisk]
) -> Health:
    """``MarginExchange._health`` in Python (``position_value``, ``position_notional`` and
    ``_ceil_div`` written out: it runs for every account every block)."""
    equity = account.collateral_units
    im = mm = total = 0
    for m, p in account.positions.items():
        size, price, r = p.size_base, prices_e8[m], risk[m]
        equity += size * price // VALUE_SCALE - p.open_notional_units
        n = -(-(abs(size) * price) // VALUE_SCALE)
        total += n
        im += -(-(n * r.initial_margin_ppm) // PPM)
        mm += -(-(n * r.maintenance_margin_ppm) // PPM)
    return Health(equity, im, mm, total)


def equity_of(account: AccountState, prices_e8: Sequence[int]) -> int:
    """``health_of(...).equity_units`` alone: collateral plus each position's value (rounded
    down) less its cost basis."""
    equity = account.collateral_units
    for m, p in account.positions.items():
        equity += p.size_base * prices_e8[m] // VALUE_SCALE - p.open_notional_units
    return equity


def contagion_markets(
    account: AccountState, prices_e8: Sequence[int], risk: Sequence[MarketRisk]
) -> list[int]:
    """Markets whose position a CROSS liquidation closes only because of losses elsewhere.

    Collateral is allotted to positions in proportion to their notional; a position is
    *contagion* if, with its share of collateral, it would have met its own maintenance
    requirement as an isolated position at the same prices.
    """
    if account.mode != CROSS or len(account.positions) < 2:
        return []
    notionals = {
        m: position_notional(p.size_base, prices_e8[m]) for m, p in account.positions.items()
    }
    total = sum(notionals.values()) or 1
    out = []
    for m, p in sorted(account.positions.items()):
        share = account.collateral_units * notionals[m] // total
        equity = share + position_value(p.size_base, prices_e8[m]) - p.open_notional_units
        mm = _ceil_div(notionals[m] * risk[m].maintenance_margin_ppm, PPM)
        if equity >= mm:
            out.append(m)
    return out


class AccountBook:
    """All accounts, positions and collateral, mirrored from exchange events."""

    def __init__(
        self,
        risk: Sequence[MarketRisk],
        exchange: str = "",
        mark_basis: Sequence[MarkBasis] | None = None,
    ):
        self.risk = tuple(risk)
        self.exchange = exchange  # the exchange's address: owner of the backstop vault
        self.accounts: dict[tuple[str, int], AccountState] = {}
        # each market's basis EMA (margin price "mark"), as last stored on chain
        self.mark_basis = list(mark_basis) if mark_basis else [MarkBasis() for _ in self.risk]

    def get(self, owner: str, subaccount: int) -> AccountState | None:
        return self.accounts.get((owner, subaccount))

    def with_positions(self) -> list[AccountState]:
        """Accounts holding at least one position, in a deterministic order."""
        return [a for a in self.accounts.values() if a.positions]

    def health(self, account: AccountState, prices_e8: Sequence[int]) -> Health:
        return health_of(account, prices_e8, self.risk)

    # IMarginExchange events that change no account (the mirror handles every other one with
    # an ``_on_<Event>`` method; tests/test_mirror.py checks the two lists cover the interface)
    NO_ACCOUNT_CHANGE = frozenset(
        {
            "MarketAdded",
            "MarketParamsUpdated",
            "RiskConfigUpdated",
            "InsuranceDeposited",
            "CounterpartyFunded",
            "FundingAccrued",
            "BadDebtRecorded",
        }
    )

    def apply(self, events: Iterable[Event]) -> None:
        """Apply decoded exchange events in chain order."""
        for ev in events:
            handler = getattr(self, f"_on_{ev.name}", None)
            if handler is not None:
                handler(ev.args)

    def mark_liquidatable(self, prices_e8: Sequence[int], block: int) -> list[AccountState]:
        """Update every account's liquidatable spell at ``prices_e8``; return the liquidatable."""
        out = []
        for a in self.accounts.values():
            if a.positions and health_of(a, prices_e8, self.risk).liquidatable:
                if a.first_liquidatable_block is None:
                    a.first_liquidatable_block = block
                out.append(a)
            else:
                a.first_liquidatable_block = None
        return out

    # ------------------------------------------------------------------ events

    def _acct(self, args: dict) -> AccountState:
        return self.accounts[(args["owner"], args["subaccount"])]

    def _on_SubaccountOpened(self, a: dict) -> None:
        key = (a["owner"], a["subaccount"])
        self.accounts[key] = AccountState(
            a["owner"], a["subaccount"], a["mode"], a["isolatedMarket"]
        )

    def _on_Deposited(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units += a["amount"]
        acct.deposited_units += a["amount"]

    def _on_Withdrawn(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units -= a["amount"]
        acct.withdrawn_units += a["amount"]

    def _on_CollateralTransferred(self, a: dict) -> None:
        src = self.accounts[(a["owner"], a["fromSubaccount"])]
        dst = self.accounts[(a["owner"], a["toSubaccount"])]
        src.collateral_units -= a["amount"]
        src.withdrawn_units += a["amount"]
        dst.collateral_units += a["amount"]
        dst.deposited_units += a["amount"]

    def _on_FundingSettled(self, a: dict) -> None:
        self._acct(a).collateral_units -= a["payment"]

    def _on_Traded(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units += a["realizedPnl"]
        if a["newSize"] == 0:
            acct.positions.pop(a["market"], None)
        else:
            acct.positions[a["market"]] = PositionState(a["newSize"], a["newOpenNotional"])

    def _on_PositionLiquidated(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units += a["realizedPnl"]
        _set_position(acct, a["market"], a["newSize"], a["newOpenNotional"])

    def _on_MarkBasisUpdated(self, a: dict) -> None:
        """A market's basis EMA took a sample (not an account change: the mark price moves)."""
        self.mark_basis[a["market"]] = MarkBasis(a["numerator"], a["denominator"], a["timestamp"])

    def _on_Liquidated(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units += a["insuranceCover"] + a["badDebt"] - a["penaltyPaid"]
        acct.liquidations += 1
        acct.first_liquidatable_block = None

    # the waterfall's later steps: fills without a venue trade, replayed with the contract's math

    def _fill(self, acct: AccountState, market: int, delta: int, quote: int) -> None:
        pos = acct.positions.get(market, PositionState())
        size, basis, realized = apply_fill(pos.size_base, pos.open_notional_units, delta, quote)
        acct.collateral_units += realized
        _set_position(acct, market, size, basis)

    def _on_PositionTakenOver(self, a: dict) -> None:
        """A position (or its slice) moves to a liquidator's subaccount at the margin price."""
        market = a["market"]
        self._fill(self._acct(a), market, -a["size"], -a["quote"])
        liquidator = self.accounts[(a["liquidator"], a["liquidatorSubaccount"])]
        self._fill(liquidator, market, a["size"], a["quote"])

    def _on_BackstopTakeover(self, a: dict) -> None:
        """A position moves to the backstop vault at the margin price (no venue trade)."""
        acct, market = self._acct(a), a["market"]
        pos = acct.positions.pop(market)
        acct.collateral_units += a["quote"] - pos.open_notional_units
        self._fill(self.vault(), market, a["size"], a["quote"])

    def _on_BackstopLiquidated(self, a: dict) -> None:
        acct = self._acct(a)
        acct.collateral_units += a["insuranceCover"] + a["badDebt"] - a["marginToVault"]
        self.vault().collateral_units += a["marginToVault"]
        acct.liquidations += 1
        acct.first_liquidatable_block = None

    def _on_Deleveraged(self, a: dict) -> None:
        """One ADL fill: the bankrupt account (size, quote from its side) against a counterparty
        at the bankruptcy price."""
        market = a["market"]
        self._fill(self._acct(a), market, a["size"], a["quote"])
        cp = self.accounts[(a["counterpartyOwner"], a["counterpartySubaccount"])]
        self._fill(cp, market, -a["size"], -a["quote"])

    def _on_AccountDeleveraged(self, a: dict) -> None:
        """The bankrupt account ends at zero: its deficit absorbed, or its surplus (rounding, a
        better venue close) handed to the insurance fund."""
        acct = self._acct(a)
        acct.collateral_units = 0
        acct.liquidations += 1
        acct.first_liquidatable_block = None

    def vault(self) -> AccountState:
        """The protocol's backstop vault (opened on chain by the first takeover)."""
        return self.accounts[(self.exchange, 0)]
