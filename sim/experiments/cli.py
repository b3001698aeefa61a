"""Command-line subcommands of the experiments (registered by sim.cli)."""

from __future__ import annotations

import argparse


def add_experiment_commands(sub: argparse._SubParsersAction) -> None:
    """Add the experiment subcommands to the ``liqsim`` parser (none yet)."""
