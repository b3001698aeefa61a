"""A fuzz test of the command line: Hypothesis-generated scenario files, positions files,
``--set`` overrides, seeds, block counts and sweep grids (wrong types, out-of-range and
non-finite numbers, huge integers, unicode and undecodable text, garbage bytes, truncated TOML).

Every input must end in exit 0 or a clean exit 2 (one ``liqsim: error:`` line), never an
exception. The CLI runs in-process through ``sim.cli.main`` with ``--check``, which performs
every check a real run makes before its set-up (scenario, seed, price path of that seed,
``--out``) and stops there: the examples run in milliseconds. That inputs passing ``--check``
really run is shown by tests/test_reliability.py (extreme but valid scenarios run to the end).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.cli import main
from sim.scenario.loader import MISSING, iter_params, to_toml
from sim.scenario.schema import Scenario
from sim.stress.positions import PositionsFile

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
POSITIONS = ROOT / "scenarios" / "positions_example.toml"
BASE = tomllib.loads(TINY.read_text())
BASE_POSITIONS = {
    **tomllib.loads(POSITIONS.read_text()),
    "scenario": str(ROOT / "scenarios" / "default.toml"),  # the fuzzed copy lives elsewhere
}

#: Examples per test (CI: 120, a few seconds in all; LIQSIM_FUZZ_EXAMPLES=5000 to dig deeper).
EXAMPLES = int(os.environ.get("LIQSIM_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _plausible(info) -> list:
    """Values near the edge of a parameter's domain: its default, its bounds, just inside and
    just outside them."""
    out = [] if info.default is MISSING or info.default is None else [info.default]
    for part in filter(None, (b.strip() for b in info.bounds.split(","))):
        bound = float(part.split(" ", 1)[1].replace("_", ""))
        out += [bound, bound * (1 + 1e-9), bound * (1 - 1e-9), bound + 1, bound - 1]
    if info.type.startswith("int"):
        out = [int(v) if isinstance(v, float) and v.is_integer() else v for v in out]
    return out


def _leaves(schema: type) -> dict[str, list]:
    """Dotted override path of every leaf parameter ('markets[].x' -> 'markets.0.x') and its
    plausible values."""
    return {
        path.replace("[]", ".0"): _plausible(info)
        for path, _, info in iter_params(schema)
        if info is not None
    }


SCENARIO_LEAVES = _leaves(Scenario)
POSITIONS_LEAVES = _leaves(PositionsFile)
SCENARIO_PATHS = list(SCENARIO_LEAVES)

# ------------------------------------------------------------------ values

EDGE_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    10**300,
    0.0,
    -0.0,
    1e-300,
    5e-324,
    1e300,
    -1e300,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    0.5,
    1.0000001,
    0.9999999,
    1e-6,
    1e9,
    100_000,
    100_001,
]
text_no_surrogates = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_NUMBERS),
    text_no_surrogates,
    st.sampled_from(["", "ETH", "cross", "csv", "gbm", "linear", "mark", "none", "\x00", "é"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(text_no_surrogates, inner, max_size=3),
    ),
    max_leaves=8,
)


def _set_path(data: dict, path: str, value) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            index = int(part)
            if index >= len(node):
                return
            node = node[index]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            return
        if not isinstance(node, dict | list):
            return
    if isinstance(node, dict):
        node[parts[-1]] = value


@st.composite
def mutated_toml(draw, base: dict, leaves: dict[str, list]) -> bytes:
    """The base file with a few keys set to fuzzed values: known keys (half the time to a value
    at the edge of their domain), or new keys."""
    data = tomllib.loads(to_toml(base))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.one_of(st.sampled_from(list(leaves)), text_no_surrogates.filter(bool)))
        edge = leaves.get(path)
        value = draw(st.sampled_from(edge)) if edge and draw(st.booleans()) else draw(values)
        _set_path(data, path, value)
    if draw(st.booleans()) and data.get("markets"):
        data["markets"] = draw(st.sampled_from([[], data["markets"] * 3, data["markets"][:1]]))
    return to_toml(data).encode("utf-8")


def files(base: dict, leaves: dict[str, list]):
    text = to_toml(base)
    return st.one_of(
        mutated_toml(base, leaves),
        mutated_toml(base, leaves),
        mutated_toml(base, leaves),
        st.binary(max_size=600),
        text_no_surrogates.map(lambda t: t.encode("utf-8")),
        st.integers(min_value=0, max_value=len(text)).map(lambda n: text[:n].encode()),
        st.sampled_from(
            [
                b"",
                b"\x00" * 64,
                b"\xff\xfe" + "[run]\nblocks = 1".encode("utf-16-le"),
                b"v = " + b"[" * 5000 + b"]" * 5000,
                b"[run]\nblocks = " + b"9" * 5000,
                b"[run]\nblocks = 1e400",
                b'name = "\\ud800"',
            ]
        ),
    )


def _literal(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


override_values = st.one_of(
    st.sampled_from(EDGE_NUMBERS).map(_literal),
    st.floats(allow_nan=True, allow_infinity=True).map(_literal),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.text(max_size=30),  # any unicode, lone surrogates (undecodable argv bytes) included
    st.sampled_from(
        ["''", '""', "[1, 2]", "{a = 1}", "'x", '"unterminated', "[" * 3000, "9" * 5000, "\x00"]
    ),
)
edge_overrides = st.sampled_from(
    [
        f"{p}={v!r}" if isinstance(v, str) else f"{p}={_literal(v)}"
        for p, vs in SCENARIO_LEAVES.items()
        for v in vs
    ]
)
overrides = st.one_of(
    edge_overrides,
    edge_overrides,
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from(SCENARIO_PATHS), override_values),
    st.builds(lambda p, v: f"{p}={v}", st.text(max_size=20), override_values),
    st.text(max_size=30),
)
numbers_as_text = st.one_of(
    st.integers(min_value=0, max_value=100).map(str),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from(EDGE_NUMBERS).map(_literal),
    st.text(max_size=10),
)


# ------------------------------------------------------------------ calling the CLI


def call(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def assert_clean(code: int, err: str, *, argparse_ok: bool = False) -> None:
    event(f"exit {code}")
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2 and not argparse_ok:
        assert err.startswith("liqsim: error: ") and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------ the tests


@FUZZ
@given(data=files(BASE, SCENARIO_LEAVES), sets=st.lists(overrides, max_size=3))
def test_fuzzed_scenario_files_and_overrides(work, data, sets):
    path = work / "scenario.toml"
    path.write_bytes(data)
    out = work / "out"
    code, err = call(["run", str(path), "--check", f"--out={out}", *(f"--set={s}" for s in sets)])
    assert_clean(code, err)
    assert not out.exists()


@FUZZ
@given(
    sets=st.lists(overrides, min_size=1, max_size=4),
    seed=numbers_as_text,
    blocks=st.one_of(st.just("40"), numbers_as_text),
)
def test_fuzzed_overrides_seeds_and_blocks_on_a_valid_scenario(work, sets, seed, blocks):
    out = work / "out2"
    argv = ["run", str(TINY), "--check", f"--out={out}", f"--seed={seed}", f"--blocks={blocks}"]
    code, err = call(argv + [f"--set={s}" for s in sets])
    assert_clean(code, err, argparse_ok=True)  # e.g. --seed=abc is argparse's "invalid int"
    assert not out.exists()


@FUZZ
@given(
    data=files(BASE_POSITIONS, POSITIONS_LEAVES),
    moves=st.one_of(st.just("-5%,-10%"), st.just("0.1"), st.text(max_size=20)),
)
def test_fuzzed_positions_files(work, data, moves):
    path = work / "positions.toml"
    path.write_bytes(data)
    out = work / "out3"
    code, err = call(["stress", str(path), "--check", f"--out={out}", f"--moves={moves}"])
    assert_clean(code, err)
    assert not out.exists()


@settings(
    max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    grid=st.lists(
        st.builds(
            lambda p, vs: f"{p}={','.join(vs)}",
            st.sampled_from(SCENARIO_PATHS),
            st.lists(override_values.filter(lambda v: len(v) < 50), min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=2,
    ),
    seeds=numbers_as_text,
)
def test_fuzzed_sweep_grids(work, grid, seeds):
    out = work / "out4"
    argv = ["sweep", str(TINY), "--check", f"--out={out}", f"--seeds={seeds}", "--workers=1"]
    code, err = call(argv + [f"--grid={g}" for g in grid])
    assert_clean(code, err, argparse_ok=True)
    assert not out.exists()
