"""The `visionflow` command: one parser assembled from the command modules, and the one place
that turns errors into exit codes.

Every command module (train, evaluate, predict, board, serve, data, lm, inspect) adds its sub-commands with
`add_commands(sub)`, each bound to the function that runs it.  Building the parser imports
neither torch nor numpy — a command imports what it needs when it runs — so `visionflow --help`
and `visionflow CMD --help` answer at once.  A new command lands in one of these modules (or a
new one listed in COMMAND_MODULES).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import VisionflowError
from . import board, data, evaluate, inspect, lm, predict, serve, train
from .common import Parser

COMMAND_MODULES = (train, evaluate, predict, board, serve, data, lm, inspect)


def build_parser() -> argparse.ArgumentParser:
    from ..core.version import VERSION

    parser = Parser(prog="visionflow", description="Train, evaluate, export, serve and use image classifiers.",
                    epilog="`visionflow COMMAND --help` lists a command's options; the README has a tour.")
    parser.add_argument("--version", action="version", version=f"visionflow {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `visionflow`: what it can do
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except VisionflowError as e:
        print(f"visionflow: error: {e}" if e.exit_code == 2 else f"visionflow: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("visionflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
