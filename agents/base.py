"""The base of every agent that decides on-chain actions.

Agents only decide. As in Mesa's own examples (wolf_sheep), the model hands each agent its
parameters at construction and, each step, a read-only view of what it may know
(:class:`sim.model.observation.AgentView`: chain state as of the last block, the public mempool,
its own pending transactions, the external price at its latency, fee estimates). The agent
yields intents (:mod:`agents.intents`); the model's wallet layer signs and submits them and
sends back what became of each. Nothing under ``agents/`` imports the chain, the block market or
the model: see docs/architecture.md.

The model then tells the agent what became of its transactions: :meth:`on_included` (receipt
record and decoded events; may return external-market :class:`~agents.intents.Hedge` trades) and
:meth:`on_dropped`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING

import mesa

if TYPE_CHECKING:
    from agents.intents import Hedge, Intent, Pending
    from sim.model.observation import AgentView

Decisions = Generator["Intent", "Pending | None", None]


class ChainAgent(mesa.Agent):
    """A Mesa agent with an on-chain account: it decides, the model's wallet acts."""

    kind = "agent"

    def __init__(self, model: mesa.Model, address: str):
        super().__init__(model)
        self.address = address

    def decide(self, view: AgentView) -> Decisions:
        """Observe ``view`` and yield intents; each yield receives the wallet's answer."""
        yield from ()

    def on_included(self, record, events) -> Iterable[Hedge]:
        """One of our transactions was mined (status 1 or reverted)."""
        return ()

    def on_dropped(self, record) -> None:
        """One of our transactions left the mempool unmined (expired, replaced, refused)."""
