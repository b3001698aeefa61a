"""The dashboard (``liqsim viz``): a Mesa SolaraViz app on a live model or a finished run.

* :mod:`sim.viz.inputs`: the dashboard's inputs and the scenario overrides they stand for;
* :mod:`sim.viz.live`: :class:`~sim.viz.live.DashboardModel`, a Mesa model wrapping one
  :class:`~sim.model.LiqSimModel` (one step = one block);
* :mod:`sim.viz.replay`: :class:`~sim.viz.replay.ReplayModel`, a Mesa model that steps through
  a run folder's tables without a chain;
* :mod:`sim.viz.snapshot`: what the panels read (the tables up to the block shown);
* :mod:`sim.viz.panels`: the panels' matplotlib figures;
* :mod:`sim.viz.app`: the Solara page; :mod:`sim.viz.server`: checks and the local server.

Only :mod:`sim.viz.app` and :mod:`sim.viz.server` need the ``viz`` extra (solara); nothing here
is imported by ``liqsim --help``.
"""
