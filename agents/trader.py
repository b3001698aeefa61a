"""Trader: opens leveraged positions in one or more markets, CROSS or ISOLATED, and manages them
with its risk habits (stop-loss, margin top-up with a reaction delay, de-risking) until its
holding time ends or it is liquidated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.base import GWEI, ChainAgent
from sim.exchange.client import USD

if TYPE_CHECKING:
    from sim.chain.events import Event
    from sim.chain.records import DroppedRecord, TxRecord
    from sim.exchange.book import AccountState
    from sim.model import LiqSimModel

OPEN_SLIPPAGE = 0.02  # worst average price accepted when opening, vs the venue mark
CLOSE_SLIPPAGE = 0.10  # when closing or de-risking (traders accept more to get out)


@dataclass(frozen=True)
class TraderProfile:
    """One trader's draws (made before the margin mode is applied, so both arms share them)."""

    markets: tuple[int, ...]
    directions: tuple[int, ...]  # +1 long, -1 short, per market
    leverage: float  # total notional / collateral
    collateral_units: int
    wallet_units: int  # kept outside the exchange for top-ups
    entry_block: int
    holding_blocks: int
    stop_loss: float  # fraction of deposited collateral lost that triggers a close; 0 = none
    mode: str  # "cross" or "isolated" (drawn; experiments may override)


@dataclass
class SubPlan:
    """One subaccount of the trader: its id, markets and opening collateral."""

    subaccount: int
    markets: tuple[int, ...]
    collateral_units: int
    top_up_due_block: int | None = None
    derisked: bool = False
    closed: bool = False
    liquidated: bool = False
    markets_done: set[int] = field(default_factory=set)


def plan_subaccounts(profile: TraderProfile, mode: str) -> list[SubPlan]:
    """CROSS: one subaccount for every market. ISOLATED: one per market, collateral split evenly
    (the same exposure and the same capital in either mode)."""
    if mode == "cross":
        return [SubPlan(0, profile.markets, profile.collateral_units)]
    k = len(profile.markets)
    shares = [profile.collateral_units // k] * k
    shares[0] += profile.collateral_units - sum(shares)
    return [SubPlan(i, (m,), shares[i]) for i, m in enumerate(profile.markets)]


class Trader(ChainAgent):
    """A leveraged trader with risk habits."""

    kind = "trader"

    def __init__(self, model: LiqSimModel, address: str, profile: TraderProfile, mode: str):
        super().__init__(model, address)
        self.profile = profile
        self.mode = mode
        self.params = model.scenario.traders
        self.subs = plan_subaccounts(profile, mode)
        self.state = "waiting"  # waiting -> open -> done
        self.wallet_units = profile.wallet_units
        self.stops = 0
        self.top_ups = 0
        self.derisks = 0
        self._pending_top_ups: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def priority_fee_wei(self) -> int:
        return int(self.params.priority_fee_gwei * GWEI)

    def _sizes(self) -> dict[int, int]:
        """Base size per market: leverage x collateral spread evenly, at the oracle price."""
        view = self.model.view
        per_market_usd_units = (
            self.profile.collateral_units * self.profile.leverage / len(self.profile.markets)
        )
        return {
            m: d * int(per_market_usd_units * 10**20 // view.oracles[m].price_e8)
            for m, d in zip(self.profile.markets, self.profile.directions, strict=True)
        }

    def _limit(self, market: int, size: int, slippage: float) -> int:
        mark = self.model.view.venues[market].mark_e8
        return int(mark * (1 + slippage)) if size > 0 else int(mark * (1 - slippage))

    def watched_prices_e8(self, block: int) -> list[int]:
        """The external prices the trader watches (``traders.latency_blocks`` old): traders
        judge their positions by the market, which the oracle follows with a lag."""
        seen = max(0, block - self.params.latency_blocks)
        return [self.model.external.price_e8(m, seen) for m in range(self.model.view.n_markets)]

    def _account(self, sub: SubPlan) -> AccountState | None:
        return self.model.view.book.get(self.address, sub.subaccount)

    # --------------------------------------------------------------------- step

    def step(self) -> None:
        if self.in_flight or self.state == "done":
            return
        block = self.model.block
        if self.state == "waiting":
            if block >= self.profile.entry_block:
                self._open()
            return
        if block >= self.profile.entry_block + self.profile.holding_blocks:
            self._close_all("close")
            return
        for sub in self.subs:
            if not (sub.closed or sub.liquidated) and self._manage(sub, block):
                return  # one action per block
        if all(s.closed or s.liquidated for s in self.subs):
            self.state = "done"

    def _open(self) -> None:
        system = self.model.system
        sizes = self._sizes()
        calls = []
        for sub in self.subs:
            market = sub.markets[0] if self.mode == "isolated" else 0
            calls += system.open_account_calls(
                self.address, sub.subaccount, self.mode, market, sub.collateral_units
            )
        for sub in self.subs:
            for m in sub.markets:
                calls.append(
                    system.trade_call(
                        self.address,
                        sub.subaccount,
                        m,
                        sizes[m],
                        self._limit(m, sizes[m], OPEN_SLIPPAGE),
                    )
                )
        for call in calls:
            if self.send(call, self.priority_fee_wei, f"open:{call.label}") is None:
                return
        self.state = "open"

    def _manage(self, sub: SubPlan, block: int) -> bool:
        """Apply the risk habits to one subaccount; True if a transaction was sent."""
        acct = self._account(sub)
        if acct is None:
            return False
        if acct.liquidations:
            sub.liquidated = True
            return False
        if not acct.positions:
            sub.closed = True
            return False
        h = self.model.view.book.health(acct, self.watched_prices_e8(block))
        loss = acct.deposited_units - acct.withdrawn_units - h.equity_units
        if self.profile.stop_loss > 0 and loss >= self.profile.stop_loss * sub.collateral_units:
            self.stops += 1
            return self._close(sub, acct, 1.0, "stop")
        if (
            self.params.derisk_fraction > 0
            and not sub.derisked
            and h.ratio < self.params.derisk_health_trigger
        ):
            sub.derisked = True
            self.derisks += 1
            return self._close(sub, acct, self.params.derisk_fraction, "derisk")
        return self._maybe_top_up(sub, h, block)

    def _maybe_top_up(self, sub: SubPlan, h, block: int) -> bool:
        p = self.params
        if not p.top_up_enabled or self.wallet_units <= 0 or h.ratio >= p.top_up_health_trigger:
            sub.top_up_due_block = None
            return False
        if sub.top_up_due_block is None:
            sub.top_up_due_block = block + p.top_up_delay_blocks  # reaction delay
        if block < sub.top_up_due_block:
            return False
        need = int(p.top_up_target_health * h.maintenance_requirement_units) - h.equity_units
        amount = min(max(need, USD), self.wallet_units)
        call = self.model.system.call(
            self.address,
            self.model.system.exchange,
            "deposit",
            sub.subaccount,
            amount,
            gas=self.model.system.config.gas.deposit,
        )
        signed = self.send(call, self.priority_fee_wei, "topup")
        if signed is None:
            return False
        self._pending_top_ups["0x" + signed.tx_hash.hex()] = amount
        self.wallet_units -= amount
        self.top_ups += 1
        sub.top_up_due_block = None
        return True

    def _close(self, sub: SubPlan, acct: AccountState, fraction: float, label: str) -> bool:
        sent = False
        for m, pos in sorted(acct.positions.items()):
            size = -pos.size_base if fraction >= 1 else -int(pos.size_base * fraction)
            if size == 0:
                continue
            call = self.model.system.trade_call(
                self.address, sub.subaccount, m, size, self._limit(m, size, CLOSE_SLIPPAGE)
            )
            sent |= self.send(call, self.priority_fee_wei, label) is not None
        return sent

    def _close_all(self, label: str) -> None:
        for sub in self.subs:
            acct = self._account(sub)
            if acct is not None and acct.positions:
                self._close(sub, acct, 1.0, label)
        if not self.in_flight:
            self.state = "done"

    # ----------------------------------------------------------------- feedback

    def on_dropped(self, record: DroppedRecord) -> None:
        amount = self._pending_top_ups.pop(record.tx_hash, 0)
        if record.reason != "replaced":
            self.wallet_units += amount  # the deposit never happened

    def on_included(self, record: TxRecord, events: list[Event]) -> None:
        amount = self._pending_top_ups.pop(record.tx_hash, 0)
        if record.status == 0:
            self.wallet_units += amount
