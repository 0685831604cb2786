"""``tenure contenders``: list an election's live candidates (the leader and waiters)."""

from __future__ import annotations

import argparse
import json

from tenure.cli.common import EXIT_STATUS_HELP, add_backend_arguments, connect, release_warnings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "contenders", help="list the live candidates of an election",
        description="Lists every live candidate (the leader and each waiter) as the store "
        "reports them, in arrival order where the store has one: order, id, value. Only "
        "reads: a SQLite store that does not exist is an error, not created.",
        epilog=EXIT_STATUS_HELP,
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args, read_only=True) as client:
        listed = client.election(args.election).contenders()
    release_warnings()
    if args.json:
        print(json.dumps([c.as_dict() for c in listed]))
        return 0
    for contender in listed:
        value = contender.value.decode("utf-8", "replace")
        print(f"{contender.order}\t{contender.candidate_id}\t{value}")
    return 0
