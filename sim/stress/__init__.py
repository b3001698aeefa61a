"""``liqsim stress``: a trader's own positions on the real contracts under adverse moves.

Not an experiment: no Mesa model runs. A positions file (:mod:`sim.stress.positions`, read
through the scenario loader) gives the trader's subaccounts and the scenario the markets come
from; the driver (:mod:`sim.stress.driver`) deploys the contracts on a fresh chain per move,
opens the book, moves the oracle and the venue, and executes the liquidations, for the book as
given and in the other margin mode; the report (:mod:`sim.stress.report`) tabulates, prints,
plots and writes the results.

Entry points: :func:`sim.stress.driver.run_stress`, :func:`sim.stress.report.print_stress`,
:func:`sim.stress.positions.parse_moves` and :func:`sim.stress.positions.parse_markets`.
"""
