"""``tenure contenders``: list an election's live candidates (the leader and waiters)."""

from __future__ import annotations

import argparse
import json

from tenure.cli.common import add_backend_arguments, connect, fail
from tenure.errors import StoreUnavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "contenders", help="list the live candidates of an election",
        description="Lists every live candidate (the leader and each waiter) as the store "
        "reports them, in arrival order where the store has one: order, id, value.",
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            listed = client.election(args.election).contenders()
        except StoreUnavailable as exc:
            return fail("contenders", str(exc))
    if args.json:
        print(json.dumps([c.as_dict() for c in listed]))
        return 0
    for contender in listed:
        value = contender.value.decode("utf-8", "replace")
        print(f"{contender.order}\t{contender.candidate_id}\t{value}")
    return 0
