"""The environment variables through which ``liqsim viz`` tells the page what to show
(:mod:`sim.viz.server` sets them, :mod:`sim.viz.app` reads them; no solara import here)."""

ENV_SCENARIO = "LIQSIM_VIZ_SCENARIO"  # scenario file of a live run (default: the default one)
ENV_SEED = "LIQSIM_VIZ_SEED"  # its initial seed
ENV_REPLAY = "LIQSIM_VIZ_REPLAY"  # a run folder to replay instead
