"""Liquidator: a profit-seeking bot.

It follows accounts from the exchange's events (the account mirror in its view), spots the ones
below maintenance after its reaction latency, confirms them with one batch ``healthOf`` read per
block, and sends a liquidation when the expected reward beats the expected gas cost. It bids
priority fees against rival liquidations of the same account it sees in the mempool (a priority
gas auction: outbid by ``bid_increment`` up to the bid cap and never past break-even), and a
liquidation that a rival wins first reverts on chain and still costs its gas.

Two modes (``liquidators.mode``):

* ``close``: ``liquidate`` closes the account's positions on the venue; the bot needs no capital.
* ``takeover``: ``takeover`` moves the positions into the bot's own CROSS subaccount at the
  margin price (as on dYdX v3, Drift v2 and Mango v4). The bot has finite capital (its
  subaccount's collateral, ``capital_usd``): it skips an account when its free collateral cannot
  carry the inventory at initial margin (``skipped_no_capital``; the contract enforces the same
  check). After a takeover it sells what it took over on the external market at once (an
  :class:`~agents.intents.ExternalTrade`, forced flow that moves the external price), then
  unwinds the venue position over the next blocks (at most ``unwind_max_trade_usd`` per block
  and market), buying its external hedge back as it goes; unwinding frees its capital. Its
  opening bid is at least the wallet's suggested tip for the current congestion
  (``view.fees.suggested_tip_wei``), which so enters its break-even.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import ExternalTrade, Liquidate, Replace, Send, Takeover, Trade
from sim.units import USD

if TYPE_CHECKING:
    from sim.exchange.book import AccountState
    from sim.model.observation import AgentView

GAS_USED_BASE = 120_000  # typical gas of a one-position liquidation (measured on the contracts)
GAS_USED_PER_EXTRA_MARKET = 70_000
TAKEOVER_GAS_BASE = 200_000  # typical gas of a one-position takeover (240,000 measured for a
# liquidator's first position in the market, less once it holds one)
TAKEOVER_GAS_PER_EXTRA_MARKET = 100_000
UNWIND_SLIPPAGE = 0.02  # stylized: worst average price of an unwind trade, vs the venue mark
CAPITAL_BUFFER = 0.05  # stylized: spare collateral kept above the initial requirement
VALUE_SCALE = 10**20  # size (1e18) x price (1e8) / value (1e6)


def liquidation_label(owner: str, subaccount: int) -> str:
    return f"liquidate:{owner}/{subaccount}"


def unwind_label(market: int) -> str:
    return f"unwind:{market}"


@dataclass(frozen=True)
class LiquidatorParams:
    """A liquidator's settings (``[liquidators]`` in the scenario, latency drawn per bot)."""

    latency_blocks: int
    min_profit_usd: float
    opening_bid_wei: int
    bid_increment: float  # fraction by which it outbids a rival or raises a waiting bid
    bid_cap_wei: int
    mode: str = "close"  # "close" or "takeover"
    capital_units: int = 0  # takeover: collateral of its CROSS subaccount at set-up
    unwind_max_trade_units: int = 0  # takeover: most unwound per block and market
    tip_from_fee_history: bool = False  # opening bid at least the suggested tip
    tip_percentile: float = 60.0
    subaccount: int = 0  # takeover: its CROSS subaccount


class Liquidator(ChainAgent):
    """A liquidation bot with a latency, a gas budget and a bidding strategy."""

    kind = "liquidator"

    def __init__(self, model, address: str, params: LiquidatorParams):
        super().__init__(model, address)
        self.params = params
        self.sent = 0
        self.won = 0
        self.lost = 0
        self.skipped_unprofitable = 0
        # takeover mode
        self.takeovers = 0  # successful takeovers (accounts, in full or a slice)
        self.skipped_no_capital = 0  # accounts skipped: its free collateral could not carry them
        self.margin_short = 0  # takeovers refused on chain: LiquidatorMarginShort
        self.unwinds = 0  # venue trades that reduced its inventory
        self.unwound_usd = 0.0
        self.hedged_usd = 0.0  # external trades against what it took over (forced flow)
        self.hedge_closed_usd = 0.0  # external hedge traded back while unwinding
        self.inventory_usd = 0.0  # its venue positions' notional at margin prices (last step)
        self.peak_inventory_usd = 0.0
        self._hedge_base: dict[int, int] = {}  # external position per market (base units)
        self._ceiling_wei: dict[str, int] = {}  # highest priority fee worth paying, per label

    @property
    def takes_over(self) -> bool:
        return self.params.mode == "takeover"

    def decide(self, view: AgentView) -> Decisions:
        yield from self._defend_pending_bids(view)
        if self.takes_over:
            yield from self._unwind(view)
        mine = {p.label for p in view.own_pending()}
        candidates = [
            a
            for a in view.liquidatable
            if view.step - a.first_liquidatable_block > self.params.latency_blocks
            and liquidation_label(a.owner, a.subaccount) not in mine
            and a.owner != self.address
        ]
        if not candidates:
            return
        for acct, equity_units in view.health_of(candidates):  # one healthOf read
            yield from self._try_liquidate(view, acct, equity_units)

    def stats(self) -> dict:
        """What it did, for the run's ``liquidators`` table."""
        p = self.params
        return {
            "liquidator": self.address,
            "mode": p.mode,
            "latency_blocks": p.latency_blocks,
            "capital_usd": p.capital_units / USD,
            "sent": self.sent,
            "won": self.won,
            "lost": self.lost,
            "skipped_unprofitable": self.skipped_unprofitable,
            "skipped_no_capital": self.skipped_no_capital,
            "takeovers": self.takeovers,
            "margin_short": self.margin_short,
            "unwinds": self.unwinds,
            "unwound_usd": self.unwound_usd,
            "hedged_usd": self.hedged_usd,
            "hedge_closed_usd": self.hedge_closed_usd,
            "inventory_usd": self.inventory_usd,
            "peak_inventory_usd": self.peak_inventory_usd,
        }

    # ---------------------------------------------------------------- economics

    def gas_used(self, acct: AccountState) -> int:
        extra = len(acct.positions) - 1
        if self.takes_over:
            return TAKEOVER_GAS_BASE + TAKEOVER_GAS_PER_EXTRA_MARKET * extra
        return GAS_USED_BASE + GAS_USED_PER_EXTRA_MARKET * extra

    @staticmethod
    def reward_usd(view: AgentView, acct: AccountState, equity_units: int) -> float:
        """Liquidator's share of the penalty, paid from what equity is left (margin prices)."""
        prices = view.chain.margin_prices_e8()
        risk = view.chain.book.risk
        penalty = share = 0.0
        for m, pos in acct.positions.items():
            notional = abs(pos.size_base) * prices[m] / 10**20
            pen = notional * risk[m].liquidation_penalty_ppm / 1e6
            penalty += pen
            share += pen * risk[m].liquidator_share_ppm / 1e6
        if penalty <= 0:
            return 0.0
        paid = min(penalty, max(equity_units, 0))
        return share * paid / penalty / 1e6

    def _break_even_priority_wei(self, view: AgentView, reward_usd: float, gas_used: int) -> int:
        """Highest priority fee at which the liquidation still earns ``min_profit_usd``."""
        eth_usd = view.fees.gas_token_price_usd()
        budget_wei = (reward_usd - self.params.min_profit_usd) / eth_usd * 1e18
        return int(budget_wei / gas_used) - view.fees.next_base_fee_wei

    def _opening_bid_wei(self, view: AgentView) -> int:
        """The fixed opening bid, at least the wallet's suggested tip for the current
        congestion (what recent blocks' cheapest included transactions paid) when
        ``tip_from_fee_history``: the bid that can get in, and the gas the break-even counts."""
        p = self.params
        if p.tip_from_fee_history:
            return max(p.opening_bid_wei, view.fees.suggested_tip_wei(p.tip_percentile))
        return p.opening_bid_wei

    def _try_liquidate(self, view: AgentView, acct: AccountState, equity_units: int) -> Decisions:
        p = self.params
        label = liquidation_label(acct.owner, acct.subaccount)
        gas_used = self.gas_used(acct)
        reward = self.reward_usd(view, acct, equity_units)
        ceiling = min(p.bid_cap_wei, self._break_even_priority_wei(view, reward, gas_used))
        rival = view.mempool.rival_bid_wei(label, self.address)
        opening = self._opening_bid_wei(view)
        bid = opening if rival is None else max(opening, int(rival * (1 + p.bid_increment)) + 1)
        if view.fees.gas_free:
            bid, ceiling = 0, 0
        if bid > ceiling:
            self.skipped_unprofitable += 1
            return
        if self.takes_over and not self._can_carry(view, acct):
            self.skipped_no_capital += 1
            return
        self._ceiling_wei[label] = ceiling
        n = len(acct.positions)
        action = (
            Takeover(acct.owner, acct.subaccount, p.subaccount, n)
            if self.takes_over
            else Liquidate(acct.owner, acct.subaccount, n)
        )
        if (yield Send(action, bid, label)) is not None:
            self.sent += 1

    # ---------------------------------------------------------------- capital

    def _sizes_after(self, view: AgentView) -> dict[int, int]:
        """Its subaccount's positions once its pending takeovers are in (base units)."""
        me = view.chain.book.get(self.address, self.params.subaccount)
        sizes = {m: pos.size_base for m, pos in me.positions.items()} if me else {}
        for pending in view.own_pending():
            if isinstance(pending.action, Takeover):
                other = view.chain.book.get(pending.action.owner, pending.action.subaccount)
                for m, pos in other.positions.items() if other else ():
                    sizes[m] = sizes.get(m, 0) + pos.size_base
        return sizes

    def _can_carry(self, view: AgentView, acct: AccountState) -> bool:
        """Whether its subaccount stays above its initial requirement (with a small buffer) once
        it holds ``acct``'s positions too, at margin prices: a takeover at the margin price
        leaves its equity unchanged and adds the positions' requirement (netting included)."""
        me = view.chain.book.get(self.address, self.params.subaccount)
        if me is None:
            return False
        prices = view.chain.margin_prices_e8()
        risk = view.chain.book.risk
        equity = view.chain.book.health(me, prices).equity_units
        sizes = self._sizes_after(view)
        for m, pos in acct.positions.items():
            sizes[m] = sizes.get(m, 0) + pos.size_base
        required = sum(
            abs(size) * prices[m] / VALUE_SCALE * risk[m].initial_margin_ppm / 1e6
            for m, size in sizes.items()
        )
        return equity >= required * (1 + CAPITAL_BUFFER)

    # ---------------------------------------------------------------- inventory

    def _unwind(self, view: AgentView) -> Decisions:
        """Reduce each venue position by at most ``unwind_max_trade_usd`` per block (one trade
        per market at a time); the external hedge is bought back when a trade is mined."""
        p = self.params
        me = view.chain.book.get(self.address, p.subaccount)
        positions = dict(me.positions) if me else {}
        prices = view.chain.margin_prices_e8()
        self.inventory_usd = sum(
            abs(pos.size_base) * prices[m] / VALUE_SCALE / USD for m, pos in positions.items()
        )
        self.peak_inventory_usd = max(self.peak_inventory_usd, self.inventory_usd)
        pending = {q.label for q in view.own_pending()}
        for m, pos in sorted(positions.items()):
            label = unwind_label(m)
            if label in pending:
                continue
            mark = view.chain.venues[m].mark_e8
            most = p.unwind_max_trade_units * VALUE_SCALE // mark
            size = -min(abs(pos.size_base), most) * (1 if pos.size_base > 0 else -1)
            if size == 0:
                continue
            slip = UNWIND_SLIPPAGE if size > 0 else -UNWIND_SLIPPAGE
            limit = int(mark * (1 + slip))
            bid = 0 if view.fees.gas_free else self._opening_bid_wei(view)
            yield Send(Trade(p.subaccount, m, size, limit), bid, label)

    def _external(self, market: int, base: int, quote_units: int, forced: bool) -> ExternalTrade:
        """An external trade of ``base`` (buy > 0) at the fill's price (``quote_units`` for
        ``base`` on chain), recorded in its hedge."""
        self._hedge_base[market] = self._hedge_base.get(market, 0) + base
        usd = abs(quote_units) / USD * (1 if base > 0 else -1)
        if forced:
            self.hedged_usd += abs(usd)
        else:
            self.hedge_closed_usd += abs(usd)
        return ExternalTrade(market, usd, usd if forced else 0.0)

    def _after_takeover(self, events) -> list[ExternalTrade]:
        """Sell what it took over on the external market at once (forced flow)."""
        out = []
        for ev in events:
            if ev.name == "PositionTakenOver" and ev.args["liquidator"] == self.address:
                a = ev.args
                out.append(self._external(a["market"], -a["size"], a["quote"], forced=True))
        self.takeovers += 1
        return out

    def _after_unwind(self, events) -> list[ExternalTrade]:
        """Buy the external hedge back in proportion to what the venue trade unwound."""
        out = []
        for ev in events:
            if ev.name != "Traded" or ev.args["owner"] != self.address:
                continue
            a, m = ev.args, ev.args["market"]
            self.unwinds += 1
            self.unwound_usd += abs(a["quoteDelta"]) / USD
            hedge, d = self._hedge_base.get(m, 0), a["sizeDelta"]
            back = -d if hedge * d > 0 else 0  # buy back (or sell back) against the hedge
            back = max(-abs(hedge), min(abs(hedge), back))
            if back:
                quote = a["quoteDelta"] * abs(back) // abs(d)
                out.append(self._external(m, back, quote, forced=False))
        return out

    def _defend_pending_bids(self, view: AgentView) -> Decisions:
        """Priority gas auction: outbid a rival that overtook one of our pending liquidations,
        and raise the bid of one left waiting for a block (by ``bid_increment``), never past the
        bid cap or the liquidation's break-even."""
        if view.fees.gas_free:
            return
        p = self.params
        for pending in view.own_pending():
            rival = view.mempool.rival_bid_wei(pending.label, self.address)
            ours = pending.priority_fee_wei
            if rival is not None and rival >= ours:
                new_bid = int(rival * (1 + p.bid_increment)) + 1
            elif view.step > pending.submitted_step:
                new_bid = int(ours * (1 + p.bid_increment)) + 1
            else:
                continue
            new_bid = max(new_bid, pending.min_replacement_priority_fee_wei)
            if new_bid <= min(p.bid_cap_wei, self._ceiling_wei.get(pending.label, p.bid_cap_wei)):
                yield Replace(pending.tx_id, new_bid)

    def on_included(self, record, events):
        if record.label.startswith("liquidate:"):
            if record.status == 1:
                self.won += 1
                if self.takes_over:
                    return self._after_takeover(events)
            else:
                self.lost += 1
                if getattr(record, "revert_reason", "") == "LiquidatorMarginShort":
                    self.margin_short += 1
        elif record.label.startswith("unwind:") and record.status == 1:
            return self._after_unwind(events)
        return ()
