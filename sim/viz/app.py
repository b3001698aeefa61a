"""The Solara page of ``liqsim viz``: Mesa's SolaraViz on a live or a replayed run.

The command line (:mod:`sim.viz.server`) serves this module; it reads what to show from the
environment: ``LIQSIM_VIZ_REPLAY`` (a run folder to replay) or ``LIQSIM_VIZ_SCENARIO`` and
``LIQSIM_VIZ_SEED`` (a live run). Step, play and reset are SolaraViz's own controls; its
"Model Parameters" card holds the inputs of :mod:`sim.viz.inputs`, and changing one builds a
new model at once (Mesa 3.3's SolaraViz only does that on Reset: see
:func:`ResettingModelCreator`).
"""

from __future__ import annotations

import os

import solara
from mesa.visualization import SolaraViz
from mesa.visualization import solara_viz as mesa_viz
from mesa.visualization.utils import force_update

from sim.scenario.loader import ConfigError
from sim.scenario.pricepath import PricePathError
from sim.viz.app_env import ENV_REPLAY, ENV_SCENARIO, ENV_SEED
from sim.viz.inputs import INPUTS, model_params
from sim.viz.live import DashboardModel
from sim.viz.panels import PANELS, key_figures, latest_liquidations, panel_png
from sim.viz.replay import ReplayModel

PLAY_INTERVAL_MS = 150

_mesa_model_creator = mesa_viz.ModelCreator


@solara.component
def ResettingModelCreator(model, user_params, *, model_parameters=None):  # noqa: N802
    """Mesa's ModelCreator (the inputs card), plus: a changed input builds a new model with
    the new inputs (what Reset does), so the page never shows a run of other inputs. A bad
    combination of inputs leaves the run as it was and says why."""
    params = solara.use_reactive(model_parameters if model_parameters is not None else {})
    error = solara.use_reactive(None)
    _mesa_model_creator(model, user_params, model_parameters=params)
    seen = solara.use_ref(None)
    current = params.value

    def rebuild_on_change():
        before, seen.current = seen.current, dict(current)
        if not before or before == current:  # the first fill of the defaults: already shown
            return
        try:
            model.value = type(model.value)(**current)
            error.set(None)
        except (ConfigError, PricePathError) as exc:
            error.set(f"inputs not applied: {exc}")
        force_update()

    solara.use_effect(rebuild_on_change, [current])
    if error.value:
        solara.Error(error.value)


mesa_viz.ModelCreator = ResettingModelCreator  # SolaraViz looks it up when it renders


def header(model):
    """The block counter, the run, its key figures so far and the inputs in force; in a
    replay, a slider to jump to any recorded block."""
    snap = model.snapshot()
    with solara.Column(gap="4px") as column:
        solara.Text(
            snap.counter,
            classes=["liqsim-block-counter"],
            style={"font-size": "1.6em", "font-weight": "bold"},
        )
        solara.Text(snap.title)
        solara.Text(key_figures(snap), classes=["liqsim-key-figures"])
        if isinstance(model, ReplayModel):
            _jump_slider(model)
        else:
            solara.Text(inputs_line(model.scenario), style={"font-size": "0.85em"})
    return column


def _jump_slider(model: ReplayModel) -> None:
    def jump(block: int) -> None:
        model.seek(block)
        force_update()

    solara.SliderInt(
        "jump to block",
        value=model.block,
        min=0,
        max=model.total,
        on_value=jump,
        thumb_label="always",
    )


def inputs_line(scenario) -> str:
    """The inputs' values in the scenario shown (the sliders show theirs only when moved)."""
    return "inputs: " + ", ".join(
        f"{i.label} {i.current(scenario):g}"
        if i.kind != "select"
        else f"{i.label} {i.current(scenario)}"
        for i in INPUTS
    )


def _panel(name: str):
    def panel(model):
        image = panel_png(model.snapshot(), name)
        return solara.Image(image, width="100%", classes=[f"liqsim-panel-{name}"])

    panel.__name__ = f"{name}_panel"
    return panel


def latest(model):
    """The latest liquidations, newest first."""
    table = latest_liquidations(model.snapshot())
    with solara.Column(classes=["liqsim-latest-liquidations"]) as column:
        solara.Markdown("**Latest liquidations** (newest first)")
        if table.empty:
            solara.Text("none yet")
        else:
            solara.DataFrame(table, items_per_page=8)
    return column


COMPONENTS = [(header, 0), *((_panel(name), 0) for name in PANELS), (latest, 0)]


def _live_model():
    scenario = os.environ.get(ENV_SCENARIO) or None
    seed = int(os.environ.get(ENV_SEED, "1"))
    return DashboardModel(scenario, seed), model_params(scenario, seed)


def _replay_model(folder: str):
    return ReplayModel(folder), {"folder": folder}


@solara.component
def Page():  # noqa: N802  (solara serves the component named Page)
    """One session: its own model (live or replay) in SolaraViz."""
    replay = os.environ.get(ENV_REPLAY)
    model, params = solara.use_memo(lambda: _replay_model(replay) if replay else _live_model(), [])
    SolaraViz(
        model,
        components=COMPONENTS,
        model_params=params,
        name="liqsim replay" if replay else "liqsim: liquidation cascades (live)",
        play_interval=PLAY_INTERVAL_MS,
    )
