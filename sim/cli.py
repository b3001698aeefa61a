"""The ``liqsim`` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from sim.demo import run_demo

    run_demo(crash=args.crash)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liqsim", description="Liquidation cascades on real margin contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="scripted demo: cross vs isolated accounts through an oracle crash")
    demo.add_argument("--crash", type=float, default=0.15, help="fractional fall of the ETH price (default 0.15)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
