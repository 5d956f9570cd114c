"""The `ballast` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ballast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from ballast.cli import crds, rules, run, validate
    from ballast.devstack import cli as devstack_cli
    from ballast.servers import reject_responder as responder

    for command in (run, crds, validate, rules, responder, devstack_cli):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
