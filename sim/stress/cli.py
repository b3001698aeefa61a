"""``liqsim stress``: a trader's own positions on the real contracts under adverse moves.

Every input (positions file, its scenario, ``--moves``, ``--markets``, ``--out``) is checked
before any contract is deployed (``--check`` stops there). The folder is written as a hidden
``.NAME.partial`` sibling and renamed when complete (``status.json``: ``complete``); a stress that
fails or is interrupted leaves no folder (it takes seconds: rerun it). An existing ``--out`` is
refused unless ``--force``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path


def _stress(args: argparse.Namespace) -> int:
    from sim.output.runfolder import RunFolder, check_out
    from sim.scenario.loader import ConfigError
    from sim.stress.positions import load_positions, parse_markets, parse_moves

    moves = parse_moves(args.moves)
    markets = parse_markets(args.markets)
    path = Path(args.positions)
    inp = load_positions(path)
    names = inp.scenario.market_names
    for m in markets or ():
        if m not in names:
            raise ConfigError("--markets", f"no market named {m!r} (markets: {', '.join(names)})")
    out = Path(args.out) if args.out else Path("runs") / f"stress-{path.stem}"
    check_out(out, force=args.force)
    if args.check:
        accounts = len(inp.book.accounts)
        print(f"liqsim stress --check: OK: {accounts} subaccounts, moves {moves} -> {out}")
        return 0
    folder = RunFolder(out, force=args.force)
    try:
        from sim.stress.driver import run_stress
        from sim.stress.report import print_stress

        res = run_stress(
            path, moves, markets, folder.work, argv="liqsim " + shlex.join(sys.argv[1:])
        )
        folder.finish("complete", moves=moves)
    except BaseException:
        folder.abandon()  # seconds of work: nothing half-done is kept
        raise
    print_stress(res)
    print(
        f"\nresults in {folder.path}/ (stress.csv, positions.csv, moves.csv, report.md, "
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
    p.add_argument(
        "--out",
        default=None,
        help="output folder, which must not exist (default runs/stress-<file name>)",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--check", action="store_true", help="validate the inputs and --out, then exit")
    p.set_defaults(func=_stress)
