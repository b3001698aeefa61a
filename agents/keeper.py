"""Keeper: the protocol's own bot for the last steps of the liquidation waterfall.

Private liquidators act first. When an account stays below the backstop threshold (equity under
``backstop_threshold`` x its maintenance requirement, Hyperliquid's 2/3) for ``delay_blocks``
blocks, the keeper hands it to the backstop vault; when its negative equity is more than the
insurance fund can cover and auto-deleveraging is on, the keeper deleverages it instead. It
confirms each candidate with one batch health read, sends one transaction per account and pays
gas like everyone else; the protocol pays it no reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import BackstopLiquidate, Deleverage, Send
from sim.units import PPM

if TYPE_CHECKING:
    from sim.exchange.book import AccountState, Health
    from sim.model.observation import AgentView


@dataclass(frozen=True)
class KeeperParams:
    """The keeper's settings (``[keeper]`` and the exchange's waterfall switches)."""

    delay_blocks: int
    priority_fee_wei: int
    backstop_threshold_ppm: int  # 0: no backstop
    adl_enabled: bool


@dataclass
class KeeperBook:
    """Since which step each account has been a backstop or ADL candidate."""

    since: dict[tuple[str, int], int] = field(default_factory=dict)


def backstop_label(owner: str, subaccount: int) -> str:
    return f"backstop:{owner}/{subaccount}"


def deleverage_label(owner: str, subaccount: int) -> str:
    return f"deleverage:{owner}/{subaccount}"


class Keeper(ChainAgent):
    """Backstop and auto-deleveraging keeper."""

    kind = "keeper"

    def __init__(self, model, address: str, params: KeeperParams):
        super().__init__(model, address)
        self.params = params
        self.book = KeeperBook()
        self.backstops = 0
        self.deleveragings = 0

    def _bankrupt(self, equity_units: int, insurance_units: int) -> bool:
        return self.params.adl_enabled and equity_units + insurance_units < 0

    def _below_backstop(self, h: Health) -> bool:
        thr = self.params.backstop_threshold_ppm
        return thr > 0 and h.equity_units * PPM < thr * h.maintenance_requirement_units

    def _candidates(self, view: AgentView) -> list[AccountState]:
        """Accounts that have been backstop or ADL candidates for ``delay_blocks``."""
        chain = view.chain
        prices = chain.margin_prices_e8()
        due, seen = [], set()
        # both kinds of candidate are below maintenance: the mirror's liquidatable accounts
        for acct in view.liquidatable:
            if acct.owner == chain.exchange:
                continue  # the backstop vault itself
            h = chain.book.health(acct, prices)
            if not (
                self._below_backstop(h) or self._bankrupt(h.equity_units, chain.insurance_units)
            ):
                continue
            seen.add(acct.key)
            since = self.book.since.setdefault(acct.key, view.step)
            if view.step - since >= self.params.delay_blocks:
                due.append(acct)
        self.book.since = {k: v for k, v in self.book.since.items() if k in seen}
        return due

    def decide(self, view: AgentView) -> Decisions:
        mine = {p.label for p in view.own_pending()}
        due = [
            a
            for a in self._candidates(view)
            if backstop_label(a.owner, a.subaccount) not in mine
            and deleverage_label(a.owner, a.subaccount) not in mine
        ]
        if not due:
            return
        prices = view.chain.margin_prices_e8()
        for acct, equity_units in view.health_of(due):  # the chain's word, one batch read
            n = len(acct.positions)
            if self._bankrupt(equity_units, view.chain.insurance_units):
                holders = len(view.chain.book.accounts)  # an upper bound: sizes the gas limit
                action, label = (
                    Deleverage(acct.owner, acct.subaccount, n, holders),
                    deleverage_label(acct.owner, acct.subaccount),
                )
            else:
                h = view.chain.book.health(acct, prices)
                if not self._below_backstop(h):
                    continue
                action, label = (
                    BackstopLiquidate(acct.owner, acct.subaccount, n),
                    backstop_label(acct.owner, acct.subaccount),
                )
            if (yield Send(action, self.params.priority_fee_wei, label)) is not None:
                if isinstance(action, Deleverage):
                    self.deleveragings += 1
                else:
                    self.backstops += 1
