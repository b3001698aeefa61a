"""Scenario schema, scenario files, overrides and the generated parameter reference."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sim.scenario.loader import to_dict
from sim.scenario.paramdocs import parameters_markdown
from sim.scenario.schema import (
    CONTRACT_MAX_SUBACCOUNTS,
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_from_mapping,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "scenarios" / "default.toml"
TINY = ROOT / "scenarios" / "tiny.toml"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, overrides=()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    return str(info.value)


def test_default_file_is_the_schema_defaults():
    scenario = load_scenario(DEFAULT)
    data, defaults = to_dict(scenario), to_dict(Scenario())
    data.pop("description")
    defaults.pop("description")
    assert data == defaults


def test_default_scenario_matches_the_brief():
    s = load_scenario(DEFAULT)
    assert s.market_names == ("ETH", "BTC")
    assert s.traders.count == 150 and 0 < s.traders.cross_fraction < 1
    assert s.liquidators.count == 3 and s.arbitrageurs.count == 2
    calm_s = s.crash.start_block * s.run.block_time_s
    crash_s = s.crash.duration_blocks * s.run.block_time_s
    assert calm_s == 3600 and crash_s == 1800
    assert all(0.15 <= m.crash_fall <= 0.20 for m in s.markets)
    assert s.background.crash_utilization > s.background.base_utilization
    assert s.oracle.deviation_threshold == 0.005 and s.oracle.heartbeat_s == 3600


def test_tiny_scenario():
    s = load_scenario(TINY)
    assert len(s.markets) == 2 and s.traders.count == 8 and s.liquidators.count == 1
    assert s.run.blocks == 40 and s.crash.end_block <= s.run.blocks


def test_resolved_toml_round_trips():
    s = load_scenario(TINY, ["markets.1.initial_margin=0.04", "run.margin_mode_override=cross"])
    text = s.to_toml()
    assert scenario_from_mapping(tomllib.loads(text)) == s
    assert text == scenario_from_mapping(tomllib.loads(text)).to_toml()


def test_overrides_apply_to_defaulted_keys_and_list_items():
    s = load_scenario(
        TINY,
        [
            "oracle.heartbeat_s=60",
            "markets.0.initial_margin=0.04",
            "chain.block_gas_limit=15_000_000",
        ],
    )
    assert s.oracle.heartbeat_s == 60
    assert s.markets[0].initial_margin == 0.04
    assert s.chain.block_gas_limit == 15_000_000
    assert s.with_overrides(["traders.count=2"]).traders.count == 2


def test_unknown_override_path_is_named(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(TINY, ["traders.levrage_max=3"])
    msg = str(info.value)
    assert "override 'traders.levrage_max=3'" in msg
    assert "unknown key 'traders.levrage_max' (did you mean 'leverage_max'" in msg
    assert msg.startswith(str(TINY))


def test_bad_override_value_names_the_override():
    with pytest.raises(ScenarioError) as info:
        load_scenario(TINY, ["traders.count=abc"])
    assert str(info.value) == (
        f"{TINY}, override 'traders.count=abc': "
        "traders.count: expected an integer, got string 'abc'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[traders]\nlevrage_max = 3\n", "unknown key 'traders.levrage_max' (did you mean"),
        ("[traders]\ncount = 'many'\n", "traders.count: expected an integer, got string 'many'"),
        (
            "[traders]\nleverage_max = 0.5\n",
            "traders.leverage_max: must be between 1 and 1000, got 0.5",
        ),
        (
            "[traders]\nleverage_max = 25\n",
            "traders.leverage_max: must be <= 1 / markets.0.initial_margin = 20 "
            "(market 'ETH'), got 25",
        ),
        (
            "[[markets]]\nname = 'ETH'\ninitial_price_usd = 1\nvolatility_annual = -0.1\n",
            "markets.0.volatility_annual: must be between 0 and 10, got -0.1",
        ),
        (
            "[[markets]]\nname = 'ETH'\ninitial_price_usd = 1\nmaintenance_margin = 0.05\n",
            "markets.0.maintenance_margin: "
            "must be < initial_margin (0.05) in market 'ETH', got 0.05",
        ),
        ("[[markets]]\nname = 'ETH'\n", "markets.0.initial_price_usd: missing required key"),
        (
            f"[traders]\nmax_subaccounts = {CONTRACT_MAX_SUBACCOUNTS + 1}\n",
            f"traders.max_subaccounts: must be between 1 and {CONTRACT_MAX_SUBACCOUNTS}, got 17",
        ),
        (
            "[traders]\ncross_fraction = 1.2\n",
            "traders.cross_fraction: must be between 0 and 1, got 1.2",
        ),
        ("[run]\nblocks = 0\n", "run.blocks: must be between 1 and 100_000, got 0"),
        (
            "[run]\nblocks = 400\n",
            "crash.start_block: crash window [300, 450) does not fit in the run",
        ),
        ("[run]\nmargin_mode_override = 'mixed'\n", "run.margin_mode_override: expected one of"),
        ("[price_path]\nkind = 'csv'\n", "price_path.csv_path: required when kind = 'csv'"),
        (
            "[price_path]\n"
            "correlation_matrix = [[1.0, 0.5, 0.1], [0.5, 1.0, 0.1], [0.1, 0.1, 1.0]]\n",
            "price_path.correlation_matrix: must be 2 x 2 (one row per market), got 3 rows",
        ),
        (
            "[price_path]\ncorrelation_matrix = [[1.0, 1.0], [0.5, 1.0]]\n",
            "price_path.correlation_matrix: correlation matrix is not symmetric",
        ),
        (
            "[price_path]\ncorrelation = -0.8\n"
            "[[markets]]\nname = 'A'\ninitial_price_usd = 1\n"
            "[[markets]]\nname = 'B'\ninitial_price_usd = 1\n"
            "[[markets]]\nname = 'C'\ninitial_price_usd = 1\n"
            "[chain]\ngas_token_market = 'A'\n",
            "price_path.correlation: correlation matrix is not positive semi-definite",
        ),
        (
            "[[markets]]\nname = 'ETH'\ninitial_price_usd = 1\n"
            "[[markets]]\nname = 'ETH'\ninitial_price_usd = 2\n",
            "markets.1.name: duplicate market name 'ETH'",
        ),
        ("[chain]\ngas_token_market = 'SOL'\n", "chain.gas_token_market: no market named 'SOL'"),
        (
            "[liquidators]\nlatency_blocks_min = 3\n",
            "liquidators.latency_blocks_min: must be <= latency_blocks_max",
        ),
        (
            "[traders]\ntop_up_target_health = 1.2\n",
            "traders.top_up_target_health: must be > top_up_health_trigger",
        ),
        (
            "[crash]\nrecovery_fraction = -0.1\n",
            "crash.recovery_fraction: must be between 0 and 1, got -0.1",
        ),
    ],
)
def test_invalid_scenarios_name_file_field_and_reason(tmp_path, text, expected):
    msg = load_error(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 's.toml'}: "), msg
    assert expected in msg, msg


def test_invalid_toml_and_missing_file(tmp_path):
    assert "invalid TOML" in load_error(tmp_path, "[traders\ncount = 1\n")
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.toml")


def test_crash_can_be_disabled_for_short_runs():
    s = load_scenario(DEFAULT, ["run.blocks=50", "crash.enabled=false"])
    assert s.run.blocks == 50


def test_csv_path_is_resolved_against_the_scenario_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "p.csv").write_text("ETH,BTC\n1,2\n", encoding="utf-8")
    path = write(tmp_path, "[price_path]\nkind = 'csv'\ncsv_path = 'data/p.csv'\n")
    s = load_scenario(path)
    assert Path(s.price_path.csv_path) == (tmp_path / "data" / "p.csv").absolute()
    missing = write(tmp_path, "[price_path]\nkind = 'csv'\ncsv_path = 'nope.csv'\n", "m.toml")
    with pytest.raises(ScenarioError, match=r"price_path.csv_path: file not found: .*nope.csv"):
        load_scenario(missing)


def test_scenario_is_frozen_hashable_and_fingerprinted():
    s = Scenario()
    with pytest.raises(AttributeError):
        s.run = None  # type: ignore[misc]
    assert hash(s) == hash(Scenario())
    assert s.fingerprint() == Scenario().fingerprint()
    assert s.fingerprint() != s.with_overrides(["traders.count=1"]).fingerprint()


def test_parameters_doc_is_up_to_date():
    doc = ROOT / "docs" / "parameters.md"
    assert doc.read_text(encoding="utf-8") == parameters_markdown(), (
        "docs/parameters.md is stale; regenerate it with "
        "`.venv/bin/python -m sim.scenario > docs/parameters.md`"
    )


def test_parameters_doc_lists_every_parameter():
    doc = parameters_markdown()
    for path in ("`run.blocks`", "`markets[].maintenance_margin`", "`traders.leverage_max`"):
        assert path in doc
    assert "| `markets[].name` | string |  | required |" in doc


def test_overrides_can_repair_a_file_that_is_invalid_alone(tmp_path):
    path = write(tmp_path, "[run]\nblocks = 100\n")  # default crash at 300..450 does not fit
    assert "crash.start_block" in load_error(tmp_path, "[run]\nblocks = 100\n")
    s = load_scenario(path, ["crash.start_block=20", "crash.duration_blocks=50"])
    assert (s.run.blocks, s.crash.start_block) == (100, 20)


def test_overrides_reach_defaulted_fields_of_listed_markets(tmp_path):
    path = write(tmp_path, "[[markets]]\nname = 'ETH'\ninitial_price_usd = 2000\n")
    s = load_scenario(path, ["markets.0.crash_fall=0.3", "traders.markets_per_trader_max=1"])
    assert s.markets[0].crash_fall == 0.3
