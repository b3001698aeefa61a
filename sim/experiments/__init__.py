"""Experiments that compose runs: paired cross/isolated comparison, amplification factorial,
parameter sweeps, and stress tests of a trader's own positions."""
