"""``tenure leader``: print the current leader, or exit 3 if there is none."""

from __future__ import annotations

import argparse

from tenure.cli.common import (
    EXIT_NO_LEADER,
    EXIT_STATUS_HELP,
    add_backend_arguments,
    connect,
    describe_leader,
    probe,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "leader", help="print the current leader (exit 3 if none)",
        description="Prints the current leader (id, value, fencing token). Exit status 3 "
        "when the election has no leader. Only reads: a SQLite store that does not exist "
        "is an error, not created.",
        epilog=EXIT_STATUS_HELP + "; 3 no leader",
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args, read_only=True) as client:
        info = probe(client.election(args.election))
        print(describe_leader(info, client, args.json))
        return EXIT_NO_LEADER if info is None else 0
