"""Committed artifacts are fresh: the sources hash matches, and (with node and the pinned solc
installed) recompiling reproduces the committed bytecode byte for byte."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sim.chain.artifacts import ARTIFACTS_DIR, REPO_ROOT, load_artifact, load_manifest, sources_hash


def test_sources_hash_matches_manifest():
    assert load_manifest()["sourcesHash"] == sources_hash(), (
        "contracts/*.sol changed since the artifacts were built: run `make contracts` and commit"
    )


def test_manifest_lists_pinned_compiler():
    manifest = load_manifest()
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    solc_pin = lock["packages"]["node_modules/solc"]["version"]
    assert manifest["compiler"].startswith(f"solc-js {solc_pin}+")
    assert (
        manifest["openzeppelin"]
        == lock["packages"]["node_modules/@openzeppelin/contracts"]["version"]
    )


def test_every_contract_has_code_and_abi():
    for name in load_manifest()["contracts"]:
        art = load_artifact(name)
        assert art.bytecode and art.deployed_bytecode and art.abi


@pytest.mark.skipif(
    shutil.which("node") is None or not (REPO_ROOT / "node_modules" / "solc").is_dir(),
    reason="node or the pinned npm solc is not installed (make test installs both)",
)
def test_recompile_reproduces_committed_bytecode(tmp_path: Path):
    subprocess.run(
        ["node", str(REPO_ROOT / "contracts" / "compile.mjs"), "--out", str(tmp_path)], check=True
    )
    fresh = json.loads((tmp_path / "manifest.json").read_text())
    assert fresh["contracts"] == load_manifest()["contracts"]
    for name in fresh["contracts"]:
        new = json.loads((tmp_path / f"{name}.json").read_text())
        old = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert new["bytecode"] == old["bytecode"], f"{name}: stale bytecode, run `make contracts`"
        assert new["abi"] == old["abi"], f"{name}: stale ABI, run `make contracts`"
