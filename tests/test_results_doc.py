"""The results document's tables (sim/experiments/results.py) from experiment folders."""

from __future__ import annotations

import pandas as pd

from sim.api import resolve_scenario
from sim.experiments import phase
from sim.experiments.results import grouped_table, paired_table, report_sections, steps


def _results(tmp_path):
    rows = []
    for seed in (1, 2, 3):
        rows.append(
            {
                "run.gas_enabled": True,
                "seed": seed,
                "x": 10.0 + seed,
                "ramp": 10,
                "state": "complete",
            }
        )
        rows.append(
            {
                "run.gas_enabled": False,
                "seed": seed,
                "x": 4.0 + 2 * seed,
                "ramp": 240,
                "state": "complete",
            }
        )
    rows.append(
        {"run.gas_enabled": True, "seed": 9, "x": 1000.0, "ramp": 10, "state": "complete"}
    )  # unpaired
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path


def test_paired_table_pairs_seeds(tmp_path):
    table = paired_table(_results(tmp_path), "run.gas_enabled", "true", "false", ["x"])
    (row,) = table.to_dict("records")
    assert row["run.gas_enabled=true"].startswith("12 [")  # seeds 1-3 only: 11, 12, 13
    assert row["paired difference"].startswith("4 [")  # 5, 4, 3


def test_grouped_table_one_row_per_group(tmp_path):
    table = grouped_table(_results(tmp_path), ["ramp"], ["x"])
    assert list(table["ramp"]) == [10, 240]
    assert table["x"].iloc[1].startswith("8 [")


def test_report_sections_moves_headings_down(tmp_path):
    (tmp_path / "report.md").write_text("# Title\ntext\n## Part\n")
    assert report_sections(tmp_path) == "## Title\ntext\n### Part"


def test_report_sections_keeps_two_experiments_plots_apart(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "amplify.png").write_bytes(b"png")
    (tmp_path / "report.md").write_text("![a](plots/amplify.png)\n")
    images = tmp_path / "doc" / "img"
    text = report_sections(tmp_path, images, prefix="march2020_")
    assert text == "![a](img/march2020_amplify.png)"
    assert (images / "march2020_amplify.png").read_bytes() == b"png"


def test_the_steps_name_their_seeds():
    named = {s.name: s.argv for s in steps(20, 10)}
    assert named["amplify-default"][-1] == "20" and named["gas-default"][-1] == "10"


def test_the_phase_step_shares_one_comparison_run_per_row():
    """The phase diagram's comparison arm pins every market's depth to the scenario's own: depth
    is read only by the impact model, which the frictionless twin switches off, so one
    comparison run per seed serves a whole row of depths."""
    argv = {s.name: s.argv for s in steps(3, 2)}["phase-default"]
    value = {a: argv[i + 1] for i, a in enumerate(argv) if a in ("--x", "--y")}
    pinned = [argv[i + 1] for i, a in enumerate(argv) if a == "--counterfactual"]
    x, y = phase.parse_axis(value["--x"], "--x"), phase.parse_axis(value["--y"], "--y")
    specs = phase.plan(resolve_scenario(argv[1]), x, y, [1, 2, 3], phase.parse_comparison(pinned))
    comparison = [s for s in specs if s.label_dict["arm"] == "comparison"]
    scenario = [s for s in specs if s.label_dict["arm"] == "scenario"]
    assert len(comparison) == len(scenario) == len(x.values) * len(y.values) * 3
    assert len({s.key for s in scenario}) == len(scenario)
    assert len({s.key for s in comparison}) == len(y.values) * 3
    assert all("endogenous_impact = false" in s.scenario_toml for s in comparison)
