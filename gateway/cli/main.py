"""Entry point of the ``tenure`` command.

Each subcommand lives in its own module of :mod:`tenure.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function
``(args) -> int`` returning the exit code. Bad arguments exit with status 2 and a
message naming the argument and the fix (argparse's convention, kept for our own
validation errors too).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tenure.errors import ConfigError, InvalidNameError, InvalidValueError

SUBCOMMAND_MODULES = ("run", "leader", "observe", "demo", "lab", "conformance", "serve",
                      "bench", "migrate", "contenders")

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Builds the full ``tenure`` parser from the subcommand modules."""
    parser = argparse.ArgumentParser(
        prog="tenure",
        description="Leader election over etcd, ZooKeeper, Consul, Redis or SQLite.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"tenure.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``tenure`` with ``argv`` and returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, InvalidNameError, InvalidValueError) as exc:
        print(f"tenure {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
