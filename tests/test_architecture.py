"""The tree is the architecture: which layer may import which (docs/architecture.md).

Parses every module under ``sim/`` and ``agents/`` (ast, no import), and fails when an import
goes the wrong way between layers or when modules import each other in a cycle. Imports under
``if TYPE_CHECKING:`` are type hints only: they never run, so they are exempt from the layer
rules (not from being real modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# layer -> layers it may import at run time (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "units": set(),
    "scenario": {"units"},
    "chain": {"units"},
    "market": {"chain", "units"},
    "exchange": {"chain", "scenario", "units"},
    "agents": {"units"},
    "wallet": {"agents", "market", "exchange", "chain", "units"},
    "output": {"exchange", "market", "chain", "scenario", "units"},
    "model": {"agents", "wallet", "market", "exchange", "chain", "output", "scenario", "units"},
    "run": {"model", "output", "scenario", "chain", "units"},
    "experiments": {"run", "output", "scenario", "units"},
    "stress": {"exchange", "chain", "output", "scenario", "units"},
    "demo": {"exchange", "chain", "units"},
    "plugin": {"exchange", "chain"},
    "viz": {"run", "model", "output", "scenario", "units"},
    "cli": {
        "run",
        "experiments",
        "stress",
        "demo",
        "viz",
        "scenario",
        "output",
        "units",
    },
    "root": set(),
}

# modules that are a layer on their own, or that name a layer differently from their folder
SINGLE_MODULE_LAYERS = {
    "sim": "root",
    "sim.units": "units",
    "sim.wallet": "wallet",
    "sim.api": "run",
    "sim.cli": "cli",
    "sim.demo": "demo",
    "sim.pytest_plugin": "plugin",
}

# what agents may never import, even lazily (the rule, stated on its own)
CHAIN_SIDE = ("sim.chain", "sim.market", "sim.model", "sim.wallet", "sim.exchange")


def layer_of(module: str) -> str:
    if module == "agents" or module.startswith("agents."):
        return "agents"
    if module in SINGLE_MODULE_LAYERS:
        return SINGLE_MODULE_LAYERS[module]
    parts = module.split(".")
    if parts[0] == "sim" and len(parts) >= 2:
        return parts[1]
    raise ValueError(f"{module} belongs to no layer: add it to docs/architecture.md and here")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, type-checking only) for every sim/agents import in ``path``."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit_stmt(stmt, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, typing_only)
                continue
            visit_stmt(child, typing_only)

    def visit_stmt(node: ast.AST, typing_only: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            # "from sim.experiments import plotting" imports the module sim.experiments.plotting
            names += [f"{node.module}.{a.name}" for a in node.names if _is_module(node.module, a)]
        for name in names:
            if name.split(".")[0] in ("sim", "agents"):
                found.append((name, typing_only))
        visit(node, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _is_module(package: str, alias: ast.alias) -> bool:
    base = ROOT.joinpath(*package.split("."))
    return (base / f"{alias.name}.py").exists() or (base / alias.name / "__init__.py").exists()


def all_modules() -> dict[str, Path]:
    paths = sorted((ROOT / "sim").rglob("*.py")) + sorted((ROOT / "agents").rglob("*.py"))
    return {module_name(p): p for p in paths}


MODULES = all_modules()


def test_every_module_belongs_to_a_known_layer():
    unknown = {m: layer_of(m) for m in MODULES if layer_of(m) not in ALLOWED}
    assert not unknown, f"modules in no documented layer: {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_rules(module):
    here = layer_of(module)
    wrong = []
    for imported, typing_only in imports_of(MODULES[module]):
        target = imported
        while target not in MODULES and "." in target:  # "from x import name": x is the module
            target = target.rsplit(".", 1)[0]
        assert target in MODULES, f"{module} imports {imported}, which does not exist"
        there = layer_of(target)
        if typing_only or there == here:
            continue
        if there not in ALLOWED[here]:
            wrong.append(f"{imported} ({there})")
    assert not wrong, f"{module} ({here}) may not import: {', '.join(wrong)}"


def test_agents_import_nothing_chain_side_at_run_time():
    for module, path in MODULES.items():
        if layer_of(module) != "agents":
            continue
        bad = [
            m for m, typing_only in imports_of(path) if not typing_only and m.startswith(CHAIN_SIDE)
        ]
        assert not bad, f"{module} imports {bad}: agents only decide (docs/architecture.md)"


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for imported, typing_only in imports_of(path):
            if typing_only:
                continue
            target = imported
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            # a package's __init__ re-exporting its own modules is not a cycle of layers
            if target != module and not module.startswith(target + "."):
                graph[module].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_the_rules_are_the_documented_ones():
    """docs/architecture.md lists every layer of the rules table."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [layer for layer in ALLOWED if f"`{layer}`" not in text]
    assert not missing, f"docs/architecture.md does not describe layers {missing}"


def test_the_checker_catches_a_wrong_arrow(tmp_path):
    """The rule test can fail: an agent importing the chain session is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from sim.chain.session import ChainSession\n", encoding="utf-8")
    ((imported, typing_only),) = imports_of(bad)
    assert imported == "sim.chain.session" and not typing_only
    assert layer_of(imported) not in ALLOWED["agents"]
    hinted = tmp_path / "hinted.py"
    hinted.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sim.model\n",
        encoding="utf-8",
    )
    assert imports_of(hinted) == [("sim.model", True)]
