"""liqsim amplify as a factorial experiment: the design, the contrast arithmetic, the minimum
detectable effect, the frictionless baseline's minimum delay, the under-powered note, and the
command end to end on the tiny scenario."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.api import resolve_scenario
from sim.cli import main
from sim.experiments import amplify
from sim.experiments.cli import AMPLIFY_SEEDS, _amplify_seed_note
from sim.experiments.factorial import (
    Effect,
    contrast_weights,
    effects_table,
    factorial_effects,
    per_seed_contrasts,
)
from sim.experiments.power import (
    TARGET,
    PowerTarget,
    minimum_detectable_effect,
    power_gaps,
    power_note,
    seeds_needed,
)
from sim.experiments.stats import mean_ci
from sim.model import LiqSimModel
from tests.anvil_support import needs_anvil

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
F = amplify.FRICTIONS

# ------------------------------------------------------------------ the design


def test_default_design_is_the_full_factorial_under_both_modes_on_the_same_seeds():
    sc = resolve_scenario(TINY, ["liquidators.count=3"])
    specs = amplify.plan(sc, [1, 2])
    labels = pd.DataFrame([{**s.label_dict, "seed": s.seed} for s in specs])
    assert len(specs) == 16 * 2 * 2 and len({s.key for s in specs}) == 64
    assert labels.groupby(["cell", "mode"]).size().eq(2).all()  # every cell x mode: seeds 1, 2
    assert set(labels["mode"]) == {"cross", "isolated"} and labels["cell"].nunique() == 16
    combos = {tuple(r[list(F)]) for _, r in labels.iterrows()}
    assert combos == set(itertools.product((False, True), repeat=4))
    for _, r in labels.drop_duplicates(["cell"]).iterrows():
        on = tuple(f for f in F if r[f])
        assert r["cell"] == amplify.cell_name(on)
    assert [amplify.cell_name(c) for c in amplify.cells(short=True)] == [
        "baseline",
        "gas",
        "oracle_lag",
        "rush",
        "impact",
        "all",
    ]


def test_rush_off_means_one_liquidator_without_latency_and_on_the_scenarios_own():
    sc = resolve_scenario(
        TINY,
        [
            "liquidators.count=3",
            "liquidators.latency_blocks_min=1",
            "liquidators.latency_blocks_max=2",
        ],
    )
    for frictions in amplify.cells():
        cell = amplify.cell_scenario(sc, frictions, "cross")
        lq = cell.liquidators
        if "rush" in frictions:
            assert (lq.count, lq.latency_blocks_min, lq.latency_blocks_max) == (3, 1, 2)
        else:
            assert (lq.count, lq.latency_blocks_min, lq.latency_blocks_max) == (1, 0, 0)
        assert cell.run.gas_enabled == ("gas" in frictions)
        assert cell.run.oracle_lag_enabled == ("oracle_lag" in frictions)
        assert cell.run.endogenous_impact == ("impact" in frictions)
        assert cell.run.margin_mode_override == "cross"


# ------------------------------------------------------------------ contrasts


def _synthetic(seeds=(1, 2, 3, 4), noise=None) -> pd.DataFrame:
    """y = 100 + 10 seed + 3 gas + 2 oracle_lag - 4 impact + 5 gas*oracle_lag + 7 rush*impact
    (+ a per-seed noise on the gas effect), 0/1 coding, every cell of every seed."""
    rows = []
    for seed in seeds:
        for on in itertools.product((0, 1), repeat=4):
            g, o, r, i = on
            y = 100 + 10 * seed + 3 * g + 2 * o - 4 * i + 5 * g * o + 7 * r * i
            if noise is not None:
                y += noise[seed] * g
            frictions = tuple(f for f, x in zip(F, on, strict=True) if x)
            rows.append(
                {
                    "seed": seed,
                    "mode": "cross",
                    "cell": amplify.cell_name(frictions),
                    **{f: bool(x) for f, x in zip(F, on, strict=True)},
                    "y": float(y),
                }
            )
    return pd.DataFrame(rows)


def test_contrasts_recover_known_main_effects_and_interactions_exactly():
    table = effects_table(_synthetic(), F, ["y"]).set_index("effect")
    # 0/1 coding: main effect of A = b_A + (half of each interaction it enters), AB = d_AB / 2
    expected = {
        "gas": 3 + 5 / 2,
        "oracle_lag": 2 + 5 / 2,
        "rush": 7 / 2,
        "impact": -4 + 7 / 2,
        "gas×oracle_lag": 5 / 2,
        "rush×impact": 7 / 2,
        "gas×rush": 0.0,
        "gas×impact": 0.0,
        "oracle_lag×rush": 0.0,
        "oracle_lag×impact": 0.0,
    }
    assert set(table.index) == set(expected)
    for name, value in expected.items():
        row = table.loc[name]
        assert row["estimate"] == pytest.approx(value, abs=1e-12)
        assert row["sd"] == pytest.approx(0.0, abs=1e-12)  # the seed level cancels in a pair
        assert row["seeds"] == 4
    assert (table.loc["gas", "kind"], table.loc["gas×oracle_lag", "kind"]) == (
        "main",
        "interaction",
    )
    base = _synthetic().query("cell == 'baseline'")["y"].mean()
    assert table.loc["gas", "baseline_mean"] == pytest.approx(base)


def test_effect_interval_is_the_paired_t_interval_of_the_per_seed_contrasts():
    noise = {1: 0.0, 2: 2.0, 3: -1.0, 4: 5.0}
    table = effects_table(_synthetic(noise=noise), F, ["y"]).set_index("effect")
    per_seed = [3 + 5 / 2 + noise[s] for s in (1, 2, 3, 4)]
    iv = mean_ci(per_seed)
    row = table.loc["gas"]
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (iv.estimate, iv.low, iv.high)
    )
    assert row["sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["mde"] == pytest.approx(minimum_detectable_effect(np.std(per_seed, ddof=1), 4))
    assert table.loc["oracle_lag", "sd"] == pytest.approx(0.0, abs=1e-12)  # noise only on gas


def test_a_seed_with_a_missing_cell_leaves_every_contrast_it_enters():
    data = _synthetic()
    data.loc[(data["seed"] == 2) & (data["cell"] == "all"), "y"] = math.nan
    c = per_seed_contrasts(data, "y", F, Effect("gas", ("gas",), "main"))
    assert math.isnan(c.loc[2]) and c.drop(2).notna().all()
    assert effects_table(data, F, ["y"]).set_index("effect").loc["gas", "seeds"] == 3


def test_contrast_weights_need_a_complete_design():
    flags = pd.DataFrame(list(itertools.product((False, True), repeat=2)), columns=["a", "b"])
    w = contrast_weights(flags, Effect("a×b", ("a", "b"), "interaction"))
    assert list(w) == [0.5, -0.5, -0.5, 0.5] and w.sum() == 0
    with pytest.raises(ValueError, match="4 cells"):
        contrast_weights(flags.iloc[:3], Effect("a", ("a",), "main"))


def test_short_design_contrasts_each_cell_with_the_baseline():
    data = _synthetic()
    short = data[data["cell"].isin(["baseline", "gas", "oracle_lag", "rush", "impact", "all"])]
    table = effects_table(short, F, ["y"], short_cells=["gas", "rush", "all"]).set_index("effect")
    assert set(table["kind"]) == {"vs baseline"}
    assert table.loc["gas", "estimate"] == pytest.approx(3.0)
    assert table.loc["rush", "estimate"] == pytest.approx(0.0)
    assert table.loc["all", "estimate"] == pytest.approx(3 + 2 - 4 + 5 + 7)


def test_factorial_effects_are_four_mains_and_six_pairs():
    effects = factorial_effects(F)
    assert [e.kind for e in effects].count("main") == 4
    assert [e.kind for e in effects].count("interaction") == 6


# ------------------------------------------------------------------ power


def test_minimum_detectable_effect_by_hand():
    # t(0.975, 9) = 2.2622, t(0.80, 9) = 0.8834 (tables)
    assert minimum_detectable_effect(1.0, 10) == pytest.approx(
        (2.2622 + 0.8834) / math.sqrt(10), rel=1e-4
    )
    # t(0.975, 1) = 12.7062, t(0.80, 1) = 1.3764
    assert minimum_detectable_effect(3.0, 2) == pytest.approx(
        (12.7062 + 1.3764) * 3 / math.sqrt(2), rel=1e-4
    )
    assert math.isnan(minimum_detectable_effect(1.0, 1))
    assert math.isnan(minimum_detectable_effect(math.nan, 5))
    assert minimum_detectable_effect(2.0, 10) == pytest.approx(
        2 * minimum_detectable_effect(1.0, 10)
    )


def test_seeds_needed_is_the_fewest_that_reach_the_target():
    for sd, target in [(1.0, 0.5), (10.0, 3.0), (0.3, 1.0)]:
        n = seeds_needed(sd, target)
        assert minimum_detectable_effect(sd, n) <= target
        assert n == 2 or minimum_detectable_effect(sd, n - 1) > target
    assert seeds_needed(0.0, 1.0) == 2
    assert seeds_needed(1.0, 0.0) is None and seeds_needed(math.nan, 1.0) is None
    assert seeds_needed(1e9, 1.0) is None  # beyond any feasible number of seeds


def _effects(mde: float, sd: float, n: int, baseline: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "mode": "cross",
                "figure": "liquidations",
                "effect": "gas",
                "kind": "main",
                "mde": mde,
                "sd": sd,
                "seeds": n,
                "baseline_mean": baseline,
            }
        ]
    )


def test_under_powered_note_names_the_figure_and_the_seeds_needed():
    target = PowerTarget(metrics=("liquidations",), share=0.2)
    sd, n = 30.0, 3
    mde = minimum_detectable_effect(sd, n)
    gaps = power_gaps(_effects(mde, sd, n), target)
    assert len(gaps) == 1 and gaps[0].needed == seeds_needed(sd, 20.0)
    note = power_note(gaps, n, target)
    assert note.startswith("**Under-powered**") and "`liquidations`" in note
    assert f"About {seeds_needed(sd, 20.0)} seeds" in note and "20%" in note
    # enough seeds: no gap, a plain statement
    sd_small = 1.0
    assert power_gaps(_effects(minimum_detectable_effect(sd_small, n), sd_small, n), target) == []
    assert power_note([], 10, target).startswith("Powered for the target")
    # one seed: no MDE at all
    one = power_gaps(_effects(math.nan, math.nan, 1), target)
    assert "no minimum detectable effect" in power_note(one, 1, target)
    # a figure the baseline does not have sets no target; another figure sets none either
    assert power_gaps(_effects(mde, sd, n, baseline=0.0), target) == []
    assert power_gaps(_effects(mde, sd, n), PowerTarget(metrics=("notional_usd",), share=0.2)) == []


def test_fewer_seeds_than_the_default_prints_a_note_before_running():
    assert _amplify_seed_note(AMPLIFY_SEEDS) is None
    assert "fewer than the default" in _amplify_seed_note(AMPLIFY_SEEDS - 1)
    assert "no minimum detectable effect" in _amplify_seed_note(1)
    assert set(TARGET.metrics) <= set(amplify.EFFECT_METRICS)


# ------------------------------------------------------------------ the frictionless baseline


def _liquidations(overrides: list[str], seed: int) -> pd.DataFrame:
    model = LiqSimModel(resolve_scenario(TINY, overrides), seed=seed)
    model.run()
    return model.recorder.tables()["liquidations"]


def test_frictionless_baseline_liquidates_at_the_minimum_delay():
    """Every liquidation of the baseline happens MIN_DELAY_BLOCKS after its account became
    liquidatable, in both modes, although the scenario's liquidators have latencies 1..2; the
    same scenario's rush cell (its own latencies) waits longer, so the check can fail."""
    sc = resolve_scenario(
        TINY,
        [
            "liquidators.count=2",
            "liquidators.latency_blocks_min=2",
            "liquidators.latency_blocks_max=2",
        ],
    )
    seen = 0
    for mode in amplify.MODES:
        base = amplify.cell_scenario(sc, (), mode)
        model = LiqSimModel(base, seed=1)
        model.run()
        liq = model.recorder.tables()["liquidations"]
        liq = liq[liq["kind"] == "liquidation"]
        seen += len(liq)
        assert (liq["delay_blocks"] == amplify.MIN_DELAY_BLOCKS).all(), liq["delay_blocks"].tolist()
    assert seen > 0
    rush = LiqSimModel(amplify.cell_scenario(sc, ("rush",), "isolated"), seed=1)
    rush.run()
    delays = rush.recorder.tables()["liquidations"]["delay_blocks"]
    assert len(delays) and (delays == amplify.MIN_DELAY_BLOCKS + 2).all()


# ------------------------------------------------------------------ the command end to end


@pytest.fixture(scope="module")
def factorial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("amplify") / "out"
    argv = [
        "amplify",
        str(TINY),
        "--seeds",
        "2",
        "--workers",
        "2",
        "--blocks",
        "30",
        "--set",
        "traders.count=5",
        "--set",
        "liquidators.count=2",
        "--chain-backend",
        "anvil",
        "--out",
        str(out),
        "--quiet",
    ]
    return out, argv


@needs_anvil
def test_cli_end_to_end_full_factorial_two_seeds(factorial_run, capsys):
    out, argv = factorial_run
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 64 and (results["state"] == "complete").all()
    assert results.groupby(["cell", "mode"]).size().eq(2).all()
    effects = pd.read_csv(out / "effects.csv")
    assert len(effects) == 2 * len(amplify.EFFECT_METRICS) * 10
    assert set(effects["kind"]) == {"main", "interaction"} and (effects["seeds"] == 2).all()
    # the effects in the table are the contrasts of the results table
    cross = results[results["mode"] == "cross"]
    on = cross[cross["gas"]].groupby("seed")["liquidations"].mean()
    off = cross[~cross["gas"]].groupby("seed")["liquidations"].mean()
    row = effects.query("mode == 'cross' and figure == 'liquidations' and effect == 'gas'").iloc[0]
    assert row["estimate"] == pytest.approx((on - off).mean())
    assert row["mde"] == pytest.approx(
        minimum_detectable_effect((on - off).std(ddof=1), 2), nan_ok=True
    )
    report = (out / "report.md").read_text()
    for heading in ("## Headline", "## Power", "## Main effects", "## Two-way interactions"):
        assert heading in report
    assert "Minimum detectable effect" in report and "the model's minimum" in report
    assert (out / "plots" / "amplify_effects.png").is_file()
    meta = json.loads((out / "experiment.json").read_text())
    assert (
        meta["parameters"]["design"] == "full factorial" and len(meta["parameters"]["cells"]) == 16
    )
    assert meta["baseline_min_delay_ok"] in (True, None)
    # 2 seeds: a note before running; after it, the power statement (on the terminal too)
    assert "fewer than the default" in captured.err
    assert "## Headline" in captured.out and "## Power" not in captured.out
    if meta["power_powered"]:
        assert "Powered for the target" in captured.out
    else:
        assert "liqsim amplify: note: Under-powered" in captured.err


@needs_anvil
def test_cli_short_design_reuses_the_factorial_runs(factorial_run, capsys):
    out, argv = factorial_run
    if not (out / "results.csv").is_file():
        pytest.skip("needs the end-to-end run above")
    code = main(
        [*argv, "--cells", "--runs-dir", str(out / "runs"), "--out", str(out.parent / "short")]
    )
    assert code == 0
    short = out.parent / "short"
    meta = json.loads((short / "experiment.json").read_text())
    assert meta["runs_executed"] == 0 and meta["runs_skipped"] == 24  # same keys: reused
    assert set(pd.read_csv(short / "effects.csv")["kind"]) == {"vs baseline"}
    assert "## Each cell against the baseline" in (short / "report.md").read_text()
    capsys.readouterr()


def test_cells_and_full_factorial_exclude_each_other(tmp_path, capsys):
    code = main(["amplify", str(TINY), "--cells", "--full-factorial", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--full-factorial" in capsys.readouterr().err
