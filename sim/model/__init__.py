"""Model layer: the Mesa model (one step is one block), what each agent is handed each step, each
agent's parameters from the scenario, and the external market's response to hedges."""

from sim.model.model import LiqSimModel

__all__ = ["LiqSimModel"]
