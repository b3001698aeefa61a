"""``liqsim stress``: a trader's own positions on the real contracts under adverse moves."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path


def _stress(args: argparse.Namespace) -> int:
    from sim.stress.driver import run_stress
    from sim.stress.positions import parse_markets, parse_moves
    from sim.stress.report import print_stress

    moves = parse_moves(args.moves)
    path = Path(args.positions)
    out = Path(args.out) if args.out else Path("runs") / f"stress-{path.stem}"
    res = run_stress(
        path, moves, parse_markets(args.markets), out, argv="liqsim " + shlex.join(sys.argv[1:])
    )
    print_stress(res)
    print(
        f"\nresults in {res.folder}/ (stress.csv, positions.csv, moves.csv, report.md, "
        "plots/stress.png)"
    )
    return 0


def add_stress_command(sub: argparse._SubParsersAction) -> None:
    """Add ``stress`` to the ``liqsim`` parser."""
    p = sub.add_parser(
        "stress",
        help="stress a trader's own positions on the real contracts",
        description="Open the positions of POSITIONS.toml on freshly deployed contracts, apply "
        "each "
        "adverse move (oracle and venue), liquidate what is liquidatable, and report equity "
        "left, liquidation prices and what goes first, beside the same book in the other "
        "margin mode.",
    )
    # accept "--moves -5%,-10%" (argparse would read a leading "-" as an option otherwise)
    p._negative_number_matcher = re.compile(r"^-[\d.][\d.%,+-]*$")
    p.add_argument("positions", help="positions file (see scenarios/positions_example.toml)")
    p.add_argument(
        "--moves",
        default="-5%,-10%,-15%,-20%,-25%,-30%",
        help="price moves, comma-separated "
        "(default -5%%,-10%%,...,-30%%; positive moves for short books)",
    )
    p.add_argument(
        "--markets",
        default="all",
        help="'all' (every market moves together) or market names, e.g. ETH",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/stress-<file name>)")
    p.set_defaults(func=_stress)
