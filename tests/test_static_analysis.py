"""Slither static analysis of the contracts: no High-impact result.

Slither (the `slither-analyzer` dev extra) compiles contracts/*.sol through crytic-compile's
standard-JSON mode with contracts/tools/solc-js.mjs as its `solc`: the pinned npm solc-js and the
OpenZeppelin sources in node_modules, so nothing is downloaded. Findings in node_modules
(OpenZeppelin) and in the test-only contracts/test/ are filtered out. The Medium results and
their triage are listed in docs/security.md.
"""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "contracts" / "tools" / "solc-js.mjs"
FILTER_PATHS = "node_modules|contracts/test/"


def _slither() -> str:
    local = Path(sys.executable).parent / "slither"
    found = str(local) if local.exists() else shutil.which("slither")
    assert found, "slither not found: install the dev extra (pip install -e '.[dev]')"
    return found


def run_slither() -> dict:
    assert (ROOT / "node_modules" / "solc").is_dir(), "node_modules/solc missing: run `npm ci`"
    cmd = [
        _slither(),
        "contracts",  # the directory: contracts/*.sol (not contracts/test/) in one compilation
        "--solc", str(DRIVER),
        "--solc-standard-json",
        "--filter-paths", FILTER_PATHS,
        "--json", "-",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(
            f"slither printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from e
    assert report.get("success"), f"slither failed: {report.get('error')}\n{proc.stderr}"
    return report


def test_slither_finds_no_high_impact_result():
    report = run_slither()
    results = report.get("results", {}).get("detectors", [])
    analysed = {
        e["source_mapping"]["filename_relative"]
        for r in results
        for e in r.get("elements", [])
        if e.get("source_mapping")
    }
    assert not any(f.startswith(("node_modules", "contracts/test/")) for f in analysed)
    by_impact = Counter(r["impact"] for r in results)
    print(f"slither results by impact: {dict(sorted(by_impact.items()))}")
    high = [r for r in results if r["impact"] == "High"]
    listing = "\n\n".join(f"[{r['check']}] {r['description'].strip()}" for r in high)
    assert not high, f"{len(high)} High-impact slither result(s):\n\n{listing}"
    # Guard against a silently empty analysis (e.g. a compile that produced no contracts).
    assert results, "slither reported no results at all: did the contracts compile?"
