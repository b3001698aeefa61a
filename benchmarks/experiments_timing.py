"""Wall-clock time of each experiment command on the default scenario (for the README's note).

    .venv/bin/python benchmarks/experiments_timing.py [--seeds 2] [--workers 2]
        [--out /tmp/liqsim-timing]

Runs, in a fresh output folder: compare (N seeds), amplify (N seeds), a 3 x 2 sweep (1 seed),
the same sweep again (resumed: nothing recomputed), a 2-point sweep on Ray (if installed) and
the stress example; prints a Markdown table of the times. amplify runs its short design
(``--cells``: 12 simulations per seed, 24 with --seeds 2, ~25 s each on py-evm); the full
factorial is 32 per seed. Expect ~15 minutes on 2 cores with --seeds 2.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIQSIM = [sys.executable, "-m", "sim.cli"]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="/tmp/liqsim-timing")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    common = ["--workers", str(args.workers), "--quiet"]
    grid = [
        "--grid",
        "oracle.deviation_threshold=0.0025,0.005,0.01",
        "--grid",
        "liquidators.count=1,3",
    ]
    commands = [
        (
            "compare",
            [
                "compare",
                "scenarios/default.toml",
                "--seeds",
                str(args.seeds),
                *common,
                "--out",
                str(out / "compare"),
            ],
        ),
        (
            "amplify",
            [
                "amplify",
                "scenarios/default.toml",
                "--cells",
                "--seeds",
                str(args.seeds),
                *common,
                "--out",
                str(out / "amplify"),
            ],
        ),
        (
            "sweep 3x2",
            [
                "sweep",
                "scenarios/default.toml",
                *grid,
                "--seeds",
                "1",
                *common,
                "--out",
                str(out / "sweep"),
            ],
        ),
        (
            "sweep 3x2 again (resumed)",
            [
                "sweep",
                "scenarios/default.toml",
                *grid,
                "--seeds",
                "1",
                *common,
                "--out",
                str(out / "sweep"),
            ],
        ),
        (
            "sweep 2 points, Ray",
            [
                "sweep",
                "scenarios/default.toml",
                "--grid",
                "liquidators.count=1,3",
                "--seeds",
                "1",
                *common,
                "--backend",
                "ray",
                "--out",
                str(out / "ray"),
            ],
        ),
        (
            "stress example",
            ["stress", "scenarios/positions_example.toml", "--out", str(out / "stress")],
        ),
    ]
    rows = []
    for name, argv in commands:
        started = time.perf_counter()
        proc = subprocess.run(
            [*LIQSIM, *argv], cwd=ROOT, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
        rows.append((name, "liqsim " + " ".join(argv), seconds, proc.returncode))
        print(f"{name}: {seconds:.0f} s (exit {proc.returncode})", file=sys.stderr, flush=True)
    print("| command | time | exit |\n|---|---|---|")
    for _name, cmd, seconds, rc in rows:
        print(f"| `{cmd}` | {seconds:.0f} s | {rc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
