"""Oracle reporter: observes the external price with a delay and writes it on-chain when it
deviates from the last answer by the threshold or the heartbeat has passed (Chainlink-like).

Its reports are transactions like any other: they bid a priority fee and wait for block space.
While a report is pending it raises its bid by 12.5% a block (the gas bumping of Chainlink
nodes), and if the price moves on by the threshold again it replaces the pending report with the
new price (same nonce). With ``run.oracle_lag_enabled = false`` the reporter writes the current
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

BUMP_PER_BLOCK = 1.125
TRACKING_PRIORITY_GWEI = 10_000.0  # with oracle lag disabled: always first in the block


@dataclass(frozen=True)
class ReporterParams:
    """The reporter's settings (``[oracle]`` and ``run.oracle_lag_enabled`` in the scenario)."""

    lag: bool  # False: report the current external price every block (no oracle lag)
    delay_blocks: int
    deviation_threshold: float
    heartbeat_s: int
    priority_fee_wei: int


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
                sent = yield Send(ReportPrice(m, observed), p.priority_fee_wei, f"report:{m}")
                if sent is not None:
                    self.reports += 1

    def _manage_pending(
        self, view: AgentView, market: int, observed: int, pending: Pending
    ) -> Decisions:
        pending_price = pending.action.price_e8
        bid = int(pending.priority_fee_wei * BUMP_PER_BLOCK) + 1
        if abs(observed - pending_price) / pending_price > self.params.deviation_threshold:
            yield Replace(pending.tx_id, bid, ReportPrice(market, observed))
        elif view.step > pending.submitted_step:
            yield Replace(pending.tx_id, bid)
