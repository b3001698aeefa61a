"""Trader: opens leveraged positions in one or more markets, CROSS or ISOLATED, and manages them
with its risk habits (stop-loss, margin top-up with a reaction delay, de-risking) until its
holding time ends or it is liquidated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import Action, Deposit, OpenSubaccount, Replace, Send, Trade
from sim.units import USD

if TYPE_CHECKING:
    from sim.exchange.book import AccountState, Health
    from sim.model.observation import AgentView
    from sim.scenario.population import TraderProfile

OPEN_SLIPPAGE = 0.02  # worst average price accepted when opening, vs the venue mark
CLOSE_SLIPPAGE = 0.10  # when closing or de-risking (traders accept more to get out)
RESCUES = frozenset({"topup", "derisk", "stop"})  # labels of the actions that prevent liquidation


@dataclass(frozen=True)
class TraderParams:
    """Risk habits every trader shares (``[traders]`` in the scenario)."""

    priority_fee_wei: int  # fixed tip, when tips do not come from the fee history
    latency_blocks: int  # age of the external price the trader watches
    derisk_fraction: float
    derisk_health_trigger: float
    top_up_enabled: bool
    top_up_health_trigger: float
    top_up_delay_blocks: int
    top_up_target_health: float
    tip_from_fee_history: bool = False
    tip_percentile: float = 60.0  # wallet estimate for ordinary transactions (geth default)
    rescue_tip_percentile: float = 90.0  # for top-ups, de-risking and stop-losses
    speed_up_after_blocks: int = 0  # re-price a transaction waiting this long (0 = never)
    fee_history_blocks: int = 20  # blocks behind the wallet's estimate (geth's default)


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

    def __init__(
        self, model, address: str, profile: TraderProfile, mode: str, params: TraderParams
    ):
        super().__init__(model, address)
        self.profile = profile
        self.mode = mode
        self.params = params
        self.subs = plan_subaccounts(profile, mode)
        self.state = "waiting"  # waiting -> open -> done
        self.wallet_units = profile.wallet_units
        self.stops = 0
        self.top_ups = 0
        self.derisks = 0
        self.speed_ups = 0
        self._pending_top_ups: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    def _sizes(self, view: AgentView) -> dict[int, int]:
        """Base size per market: leverage x collateral spread evenly, at the oracle price."""
        per_market_usd_units = (
            self.profile.collateral_units * self.profile.leverage / len(self.profile.markets)
        )
        return {
            m: d * int(per_market_usd_units * 10**20 // view.chain.oracles[m].price_e8)
            for m, d in zip(self.profile.markets, self.profile.directions, strict=True)
        }

    @staticmethod
    def _limit(view: AgentView, market: int, size: int, slippage: float) -> int:
        mark = view.chain.venues[market].mark_e8
        return int(mark * (1 + slippage)) if size > 0 else int(mark * (1 - slippage))

    def watched_prices_e8(self, view: AgentView) -> list[int]:
        """The external prices the trader watches (``traders.latency_blocks`` old): traders
        judge their positions by the market, which the oracle follows with a lag."""
        lag = self.params.latency_blocks
        return [view.external_price_e8(m, lag) for m in range(view.chain.n_markets)]

    def _account(self, view: AgentView, sub: SubPlan) -> AccountState | None:
        return view.chain.book.get(self.address, sub.subaccount)

    def tip_wei(self, view: AgentView, rescue: bool) -> int:
        """The wallet's tip: its estimate from recent blocks ('fast' for rescues), or the
        fixed tip."""
        p = self.params
        if not p.tip_from_fee_history:
            return p.priority_fee_wei
        percentile = p.rescue_tip_percentile if rescue else p.tip_percentile
        return view.fees.suggested_tip_wei(percentile, p.fee_history_blocks)

    def _send(self, view: AgentView, action: Action, label: str) -> Decisions:
        tip = self.tip_wei(view, rescue=label in RESCUES)
        return (yield Send(action, tip, label))

    def _speed_up(self, view: AgentView) -> Decisions:
        """Re-price transactions that waited ``speed_up_after_blocks`` at the current rescue
        estimate (at least the mempool's replacement bump)."""
        wait = self.params.speed_up_after_blocks
        if wait <= 0 or view.fees.gas_free:
            return
        for pending in view.own_pending():
            if view.step - pending.submitted_step >= wait:
                tip = max(self.tip_wei(view, True), pending.min_replacement_priority_fee_wei)
                if (yield Replace(pending.tx_id, tip)) is not None:
                    self.speed_ups += 1

    # --------------------------------------------------------------------- step

    def decide(self, view: AgentView) -> Decisions:
        if self.state == "done":
            return
        if view.own_pending():
            yield from self._speed_up(view)
            return
        block = view.step
        if self.state == "waiting":
            if block >= self.profile.entry_block:
                yield from self._open(view)
            return
        if block >= self.profile.entry_block + self.profile.holding_blocks:
            yield from self._close_all(view, "close")
            return
        for sub in self.subs:
            if not (sub.closed or sub.liquidated) and (yield from self._manage(view, sub, block)):
                return  # one action per block
        if all(s.closed or s.liquidated for s in self.subs):
            self.state = "done"

    def _open(self, view: AgentView) -> Decisions:
        sizes = self._sizes(view)
        actions: list[tuple[Action, str]] = []
        for sub in self.subs:
            market = sub.markets[0] if self.mode == "isolated" else 0
            actions.append(
                (OpenSubaccount(sub.subaccount, self.mode, market), "open:openSubaccount")
            )
            if sub.collateral_units > 0:
                actions.append((Deposit(sub.subaccount, sub.collateral_units), "open:deposit"))
        for sub in self.subs:
            for m in sub.markets:
                limit = self._limit(view, m, sizes[m], OPEN_SLIPPAGE)
                actions.append((Trade(sub.subaccount, m, sizes[m], limit), "open:trade"))
        for action, label in actions:
            if (yield from self._send(view, action, label)) is None:
                return
        self.state = "open"

    def _manage(self, view: AgentView, sub: SubPlan, block: int) -> Decisions:
        """Apply the risk habits to one subaccount; True if a transaction was sent."""
        acct = self._account(view, sub)
        if acct is None:
            return False
        if acct.liquidations:
            sub.liquidated = True
            return False
        if not acct.positions:
            sub.closed = True
            return False
        h = view.chain.book.health(acct, self.watched_prices_e8(view))
        loss = acct.deposited_units - acct.withdrawn_units - h.equity_units
        if self.profile.stop_loss > 0 and loss >= self.profile.stop_loss * sub.collateral_units:
            self.stops += 1
            return (yield from self._close(view, sub, acct, 1.0, "stop"))
        if (
            self.params.derisk_fraction > 0
            and not sub.derisked
            and h.ratio < self.params.derisk_health_trigger
        ):
            sub.derisked = True
            self.derisks += 1
            return (yield from self._close(view, sub, acct, self.params.derisk_fraction, "derisk"))
        return (yield from self._maybe_top_up(view, sub, h, block))

    def _maybe_top_up(self, view: AgentView, sub: SubPlan, h: Health, block: int) -> Decisions:
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
        pending = yield from self._send(view, Deposit(sub.subaccount, amount), "topup")
        if pending is None:
            return False
        self._pending_top_ups[pending.tx_id] = amount
        self.wallet_units -= amount
        self.top_ups += 1
        sub.top_up_due_block = None
        return True

    def _close(
        self, view: AgentView, sub: SubPlan, acct: AccountState, fraction: float, label: str
    ) -> Decisions:
        sent = False
        for m, pos in sorted(acct.positions.items()):
            size = -pos.size_base if fraction >= 1 else -int(pos.size_base * fraction)
            if size == 0:
                continue
            limit = self._limit(view, m, size, CLOSE_SLIPPAGE)
            sent |= (
                yield from self._send(view, Trade(sub.subaccount, m, size, limit), label)
            ) is not None
        return sent

    def _close_all(self, view: AgentView, label: str) -> Decisions:
        for sub in self.subs:
            acct = self._account(view, sub)
            if acct is not None and acct.positions:
                yield from self._close(view, sub, acct, 1.0, label)
        if not view.own_pending():
            self.state = "done"

    # ----------------------------------------------------------------- feedback

    def on_dropped(self, record) -> None:
        amount = self._pending_top_ups.pop(record.tx_hash, 0)
        if record.reason != "replaced":
            self.wallet_units += amount  # the deposit never happened

    def on_included(self, record, events):
        amount = self._pending_top_ups.pop(record.tx_hash, 0)
        if record.status == 0:
            self.wallet_units += amount
        return ()
