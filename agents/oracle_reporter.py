"""Oracle reporter: observes the external price with a delay and writes it on-chain when it
deviates from the last answer by the threshold or the heartbeat has passed (Chainlink-like).

Its reports are transactions like any other: they bid a priority fee and wait for block space.
With ``tip_from_fee_history`` it prices them as a Chainlink node's block-history estimator does
(a percentile of the cheapest tips of the last few blocks, never below its fixed tip) and bumps a
waiting report by ``bump_percent`` (at least ``bump_min_wei``) every ``bump_threshold_blocks``
(Chainlink's gas bumping); otherwise it bids its fixed tip and raises it 12.5% every block. If
the price moves on by the threshold again it replaces the pending report with the new price
(same nonce). With ``run.oracle_lag_enabled = false`` the reporter writes the current
external price every block with a top bid: the on-chain price tracks the external one.
(Its fee cap, ``oracle.max_fee_multiplier`` x the next base fee, is its wallet's setting.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.base import ChainAgent, Decisions
from agents.intents import Pending, Replace, ReportPrice, Send

if TYPE_CHECKING:
    from sim.model.observation import AgentView

TRACKING_PRIORITY_GWEI = 10_000.0  # with oracle lag disabled: always first in the block


@dataclass(frozen=True)
class ReporterParams:
    """The reporter's settings (``[oracle]`` and ``run.oracle_lag_enabled`` in the scenario)."""

    lag: bool  # False: report the current external price every block (no oracle lag)
    delay_blocks: int
    deviation_threshold: float
    heartbeat_s: int
    priority_fee_wei: int
    tip_from_fee_history: bool = False
    tip_percentile: float = 50.0
    estimator_blocks: int = 4
    bump_percent: float = 12.5
    bump_min_wei: int = 0
    bump_threshold_blocks: int = 1


class OracleReporter(ChainAgent):
    """Writes every market's feed."""

    kind = "oracle"

    def __init__(self, model, address: str, params: ReporterParams):
        super().__init__(model, address)
        self.params = params
        self.reports = 0

    @staticmethod
    def _pending_report(view: AgentView, market: int) -> Pending | None:
        label = f"report:{market}"
        return next((p for p in view.own_pending() if p.label == label), None)

    def decide(self, view: AgentView) -> Decisions:
        p = self.params
        next_time = view.chain.timestamp_s + view.block_time_s
        for m in range(view.chain.n_markets):
            observed = view.external_price_e8(m, p.delay_blocks)
            pending = self._pending_report(view, m)
            if pending is not None:
                yield from self._manage_pending(view, m, observed, pending)
                continue
            last = view.chain.oracles[m]
            moved = (
                abs(observed - last.price_e8) / last.price_e8 > p.deviation_threshold
                if p.lag
                else observed != last.price_e8
            )
            stale = next_time - last.updated_at_s >= p.heartbeat_s
            if moved or stale:
                sent = yield Send(ReportPrice(m, observed), self.tip_wei(view), f"report:{m}")
                if sent is not None:
                    self.reports += 1

    def _manage_pending(
        self, view: AgentView, market: int, observed: int, pending: Pending
    ) -> Decisions:
        pending_price = pending.action.price_e8
        bid = self.bumped_wei(pending.priority_fee_wei)
        if abs(observed - pending_price) / pending_price > self.params.deviation_threshold:
            yield Replace(
                pending.tx_id, max(bid, self.tip_wei(view)), ReportPrice(market, observed)
            )
        elif view.step - pending.submitted_step >= self.params.bump_threshold_blocks:
            yield Replace(pending.tx_id, bid)

    def tip_wei(self, view: AgentView) -> int:
        """A fresh report's tip: the estimator's (never below the fixed tip) or the fixed tip."""
        p = self.params
        if not p.tip_from_fee_history:
            return p.priority_fee_wei
        estimate = view.fees.suggested_tip_wei(p.tip_percentile, p.estimator_blocks)
        return max(p.priority_fee_wei, estimate)

    def bumped_wei(self, tip_wei: int) -> int:
        """The next bid of a waiting report."""
        p = self.params
        return max(int(tip_wei * (1 + p.bump_percent / 100)) + 1, tip_wei + p.bump_min_wei)
