"""The results document's tables (sim/experiments/results.py) from experiment folders."""

from __future__ import annotations

import pandas as pd

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


def test_the_steps_name_their_seeds():
    named = {s.name: s.argv for s in steps(20, 10)}
    assert named["amplify-default"][-1] == "20" and named["gas-default"][-1] == "10"
