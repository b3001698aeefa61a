"""The generic validated-config loader (sim.scenario.loader) on a small toy schema."""

from __future__ import annotations

import dataclasses
import pickle
import tomllib
from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.scenario.loader import (
    ConfigError,
    apply_overrides,
    check,
    doc_meta,
    iter_params,
    load,
    param,
    parse_override,
    to_dict,
    to_toml,
    with_defaults,
)


@dataclass(frozen=True)
class Leg:
    name: str = param(doc="leg name")
    weight: float = param(1.0, "weight", ge=0, le=1)


@dataclass(frozen=True)
class Traders:
    count: int = param(10, "how many", ge=0)
    leverage_min: float = param(1.0, "min", unit="x", ge=1)
    leverage_max: float = param(5.0, "max", unit="x", ge=1)
    mode: Literal["cross", "isolated"] = param("cross", "margin mode")
    enabled: bool = param(True, "on")
    latencies: tuple[int, ...] = param((0, 1), "per-agent latency", ge=0)
    pair: tuple[float, float] = param((0.0, 1.0), "a pair")

    def validate(self) -> None:
        if self.leverage_min > self.leverage_max:
            raise ConfigError("leverage_min", "must be <= leverage_max")


@dataclass(frozen=True)
class Root:
    title: str = param("x", "title")
    traders: Traders = field(default_factory=Traders, metadata=doc_meta("traders"))
    legs: tuple[Leg, ...] = field(default_factory=lambda: (Leg("a"),), metadata=doc_meta("legs"))
    matrix: tuple[tuple[float, ...], ...] = param((), "matrix")
    note: str | None = param(None, "optional note")

    def validate(self) -> None:
        if len({leg.name for leg in self.legs}) != len(self.legs):
            raise ConfigError("legs", "duplicate leg names")


def error(mapping, cls=Root) -> str:
    with pytest.raises(ConfigError) as info:
        load(cls, mapping)
    return str(info.value)


def test_defaults_and_nested_values():
    root = load(
        Root, {"traders": {"count": 3}, "legs": [{"name": "a"}, {"name": "b", "weight": 0}]}
    )
    assert root.traders.count == 3
    assert root.traders.leverage_max == 5.0
    assert root.legs == (Leg("a", 1.0), Leg("b", 0.0))
    assert isinstance(root.legs[1].weight, float)  # int accepted for float, stored as float
    assert load(Root, {}) == Root()


def test_bound_error_names_dotted_path():
    assert (
        error({"traders": {"leverage_max": 0.5}}) == "traders.leverage_max: must be >= 1, got 0.5"
    )
    assert error({"legs": [{"name": "a"}, {"name": "b", "weight": 1.5}]}) == (
        "legs.1.weight: must be between 0 and 1, got 1.5"
    )
    assert error({"traders": {"latencies": [0, -2]}}) == "traders.latencies.1: must be >= 0, got -2"


def test_unknown_key_suggests_spelling():
    msg = error({"traders": {"levrage_max": 3}})
    assert msg.startswith("unknown key 'traders.levrage_max'")
    assert "did you mean 'leverage_max'" in msg
    assert error({"trader": {}}) == "unknown key 'trader' (did you mean 'traders'?)"
    assert error({"zzz": 1}) == "unknown key 'zzz'"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"traders": {"leverage_max": "abc"}},
            "traders.leverage_max: expected a number, got string 'abc'",
        ),
        (
            {"traders": {"leverage_max": True}},
            "traders.leverage_max: expected a number, got boolean true",
        ),
        ({"traders": {"count": 2.5}}, "traders.count: expected an integer, got float 2.5"),
        ({"traders": {"count": False}}, "traders.count: expected an integer, got boolean false"),
        (
            {"traders": {"enabled": 1}},
            "traders.enabled: expected a boolean (true or false), got integer 1",
        ),
        (
            {"traders": {"mode": "crss"}},
            "traders.mode: expected one of 'cross', 'isolated', got string 'crss' "
            "(did you mean 'cross'?)",
        ),
        ({"traders": 3}, "traders: expected a table, got integer 3"),
        ({"legs": {"name": "a"}}, "legs: expected an array, got table"),
        ({"legs": [{}]}, "legs.0.name: missing required key"),
        ({"traders": {"pair": [1.0]}}, "traders.pair: expected an array of 2 items, got 1"),
        (
            {"traders": {"leverage_max": float("nan")}},
            "traders.leverage_max: expected a finite number, got float nan",
        ),
        ({"matrix": [[1, 0], [0, "x"]]}, "matrix.1.1: expected a number, got string 'x'"),
        ({"title": 5}, "title: expected a string, got integer 5"),
    ],
)
def test_type_errors(mapping, message):
    assert error(mapping) == message


def test_validate_hook_paths_are_prefixed():
    assert (
        error({"traders": {"leverage_min": 6}}) == "traders.leverage_min: must be <= leverage_max"
    )
    assert error({"legs": [{"name": "a"}, {"name": "a"}]}) == "legs: duplicate leg names"


def test_error_carries_path_reason_and_source():
    with pytest.raises(ConfigError) as info:
        load(Root, {"traders": {"count": -1}})
    err = info.value
    assert (err.path, err.reason) == ("traders.count", "must be >= 0, got -1")
    assert str(err.with_source("f.toml")) == "f.toml: traders.count: must be >= 0, got -1"
    copy = pickle.loads(pickle.dumps(err.with_source("f.toml")))
    assert str(copy) == "f.toml: traders.count: must be >= 0, got -1"


def test_optional_field():
    assert load(Root, {"note": "hi"}).note == "hi"
    assert "note" not in to_dict(Root())


def test_check_revalidates_replaced_objects():
    bad = dataclasses.replace(Root(), traders=dataclasses.replace(Traders(), count=-5))
    with pytest.raises(ConfigError, match=r"^traders.count: must be >= 0, got -5$"):
        check(bad)
    check(Root())


def test_overrides_parse_toml_literals_with_string_fallback():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b = 0.05") == ("a.b", 0.05)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=ETH") == ("a", "ETH")
    assert parse_override('a="x=y"') == ("a", "x=y")
    assert parse_override("a=data/x.csv") == ("a", "data/x.csv")
    with pytest.raises(ConfigError, match="not of the form"):
        parse_override("novalue")


def test_apply_overrides_sets_nested_and_indexed_paths():
    base = to_dict(load(Root, {"legs": [{"name": "a"}, {"name": "b"}]}))
    out = apply_overrides(base, ["traders.count=7", "legs.1.weight=0.25", "title=hello"])
    root = load(Root, out)
    assert (root.traders.count, root.legs[1].weight, root.title) == (7, 0.25, "hello")
    assert base["traders"]["count"] == 10  # input untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("traders.levrage=3", "unknown key 'traders.levrage'"),
        ("legs.5.weight=1", "legs.5: index out of range ('legs' has 2 items)"),
        ("legs.x.weight=1", "legs.x: 'legs' is an array; use an index 0..1"),
        ("title.sub=1", "title.sub: 'title' is a value, not a table or array"),
    ],
)
def test_apply_overrides_errors_name_the_path(override, message):
    base = to_dict(load(Root, {"legs": [{"name": "a"}, {"name": "b"}]}))
    with pytest.raises(ConfigError) as info:
        apply_overrides(base, [override])
    assert str(info.value).startswith(message)


def test_override_value_is_validated_on_load():
    out = apply_overrides(to_dict(Root()), ["traders.count=abc"])
    assert error(out) == "traders.count: expected an integer, got string 'abc'"


def test_to_toml_round_trip_and_order():
    root = load(
        Root,
        {
            "title": 'quote " and \\ and \n',
            "legs": [{"name": "a"}, {"name": "b", "weight": 0.5}],
            "matrix": [[1, 0.5], [0.5, 1]],
            "traders": {"latencies": [], "leverage_max": 1e-05 + 2},
        },
    )
    text = to_toml(root)
    assert tomllib.loads(text) == to_dict(root)
    assert load(Root, tomllib.loads(text)) == root
    assert text == to_toml(load(Root, tomllib.loads(text)))
    assert text.index("[traders]") < text.index("[[legs]]")
    assert text.splitlines()[0].startswith("title = ")


def test_iter_params_lists_leaves_with_metadata():
    rows = {path: info for path, _, info in iter_params(Root) if info is not None}
    assert rows["traders.leverage_max"].unit == "x"
    assert rows["traders.leverage_max"].bounds == ">= 1"
    assert rows["traders.mode"].type == '"cross" | "isolated"'
    assert rows["legs[].weight"].bounds == ">= 0, <= 1"
    assert rows["legs[].name"].default is dataclasses.MISSING


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)
keys = st.text(min_size=1, max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
tables = st.recursive(
    st.dictionaries(keys, values, max_size=4),
    lambda inner: st.dictionaries(
        keys, st.one_of(values, inner, st.lists(inner, min_size=1, max_size=2)), max_size=4
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(tables)
def test_to_toml_round_trips_arbitrary_tables(table):
    assert tomllib.loads(to_toml(table)) == table


def test_with_defaults_fills_missing_keys_without_validating():
    out = with_defaults(Root, {"traders": {"count": "bad"}, "legs": [{"name": "b"}], "zz": 1})
    assert out["traders"]["count"] == "bad" and out["traders"]["leverage_max"] == 5.0
    assert out["legs"] == [{"name": "b", "weight": 1.0}]
    assert out["zz"] == 1 and "note" not in out
    assert error(out).startswith("unknown key 'zz'")
