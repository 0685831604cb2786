"""``tenure leader``: print the current leader, or exit 3 if there is none."""

from __future__ import annotations

import argparse

from tenure.cli.common import (
    EXIT_NO_LEADER,
    add_backend_arguments,
    connect,
    describe_leader,
    fail,
)
from tenure.errors import StoreUnavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "leader", help="print the current leader (exit 3 if none)",
        description="Prints the current leader (id, value, fencing token). Exit status 3 "
        "when the election has no leader.",
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            info = client.election(args.election).leader()
        except StoreUnavailable as exc:
            return fail("leader", str(exc))
        print(describe_leader(info, client, args.json))
        return EXIT_NO_LEADER if info is None else 0
