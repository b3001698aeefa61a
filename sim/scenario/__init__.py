"""Scenario layer: the validated scenario (schema and its generic loader), its parameter docs,
the exogenous price paths and background-demand profile, and the trader population draws.
Pure data and numpy: no chain, no Mesa."""
