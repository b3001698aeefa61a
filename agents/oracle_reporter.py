"""Oracle reporter: observes the external price with a delay and writes it on-chain when it
deviates from the last answer by the threshold or the heartbeat has passed (Chainlink-like).

Its reports are transactions like any other: they bid a priority fee and wait for block space.
While a report is pending it raises its bid by 12.5% a block (the gas bumping of Chainlink
nodes), and if the price moves on by the threshold again it replaces the pending report with the
new price (same nonce). With ``run.oracle_lag_enabled = false`` the reporter writes the current
external price every block with a top bid: the on-chain price tracks the external one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.base import GWEI, ChainAgent

if TYPE_CHECKING:
    from sim.model import LiqSimModel

BUMP_PER_BLOCK = 1.125
TRACKING_PRIORITY_GWEI = 10_000.0  # with oracle lag disabled: always first in the block


class OracleReporter(ChainAgent):
    """Writes every market's feed."""

    kind = "oracle"

    def __init__(self, model: LiqSimModel, address: str):
        super().__init__(model, address)
        p = model.scenario.oracle
        self.lag = model.scenario.run.oracle_lag_enabled
        self.delay_blocks = p.observation_delay_blocks if self.lag else 0
        self.threshold = p.deviation_threshold if self.lag else 0.0
        self.heartbeat_s = p.heartbeat_s
        self.priority_wei = int(
            (p.priority_fee_gwei if self.lag else TRACKING_PRIORITY_GWEI) * GWEI
        )
        self.fee_multiplier = p.max_fee_multiplier
        self.reports = 0

    def max_fee_wei(self, priority_fee_wei: int) -> int:
        """The reporter's fee cap: ``oracle.max_fee_multiplier`` x next base fee + priority."""
        return int(self.fee_multiplier * self.model.next_base_fee_wei()) + priority_fee_wei

    def _observed_e8(self, market: int) -> int:
        block = max(0, self.model.block - self.delay_blocks)
        return self.model.external.price_e8(market, block)

    def _pending_report(self, market: int):
        label = f"report:{market}"
        return next(((h, f) for h, f in self.in_flight.items() if f.label == label), None)

    def step(self) -> None:
        view = self.model.view
        next_time = view.timestamp_s + self.model.session.block_time_s
        for m in range(view.n_markets):
            observed = self._observed_e8(m)
            pending = self._pending_report(m)
            if pending is not None:
                self._manage_pending(m, observed, *pending)
                continue
            last = view.oracles[m]
            moved = (
                abs(observed - last.price_e8) / last.price_e8 > self.threshold
                if self.lag
                else observed != last.price_e8
            )
            stale = next_time - last.updated_at_s >= self.heartbeat_s
            if moved or stale:
                call = self.model.system.report_call(m, observed)
                if self.send(call, self.priority_wei, f"report:{m}") is not None:
                    self.reports += 1

    def _manage_pending(self, market: int, observed: int, tx_hash: bytes, flight) -> None:
        pending_price = int.from_bytes(flight.signed.data[4:36], "big", signed=True)
        bid = int(flight.signed.max_priority_fee_per_gas_wei * BUMP_PER_BLOCK) + 1
        if abs(observed - pending_price) / pending_price > self.threshold:
            self.replace(tx_hash, self.model.system.report_call(market, observed), bid)
        elif self.model.block > flight.submitted_step:
            self.bump(tx_hash, bid)
