"""``tenure handoff``: ask the current leader to hand its election to a named waiter.

The request travels through the store (:mod:`tenure.handoff_requests`); the leader
must accept requests (``tenure run --accept-handoff``, ``Election.run(...,
accept_handoff_requests=True)`` or a :class:`~tenure.handoff_requests.HandoffListener`).
Exit 0 once the named candidate leads; 4 when the handoff was refused or did not happen,
with one line saying why.
"""

from __future__ import annotations

import argparse
import json

from tenure.cli.common import (
    EXIT_STATUS_HELP,
    add_backend_arguments,
    connect,
    non_negative_seconds,
    release_warnings,
)
from tenure.errors import ConfigError
from tenure.handoff_requests import request_handoff
from tenure.names import check_candidate_id

EXIT_NOT_HANDED_OFF = 4


def candidate(text: str) -> str:
    """argparse type for ``--to``: a candidate id."""
    try:
        return check_candidate_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def handoff_seconds(text: str) -> float:
    """argparse type for ``--timeout``: more than 0, at most 3600 seconds."""
    value = non_negative_seconds(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 3600 s")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "handoff", help="hand the leadership to a named waiting candidate",
        description="Asks the current leader to hand the election to the waiting "
        "candidate --to: it leads next, with a larger token, and no other waiter leads in "
        "between. If it is not a live contender, or does not take over within --timeout, "
        "the leader keeps leading (--on-failure keep, the default) or resigns. The leader "
        "must accept handoff requests (tenure run --accept-handoff, or "
        "Election.run(..., accept_handoff_requests=True) in Python).",
        epilog=EXIT_STATUS_HELP + f"; {EXIT_NOT_HANDED_OFF} the handoff was refused or did "
        "not happen (the line says why)",
    )
    add_backend_arguments(parser)
    parser.add_argument("--to", required=True, type=candidate, metavar="ID",
                        help="candidate id of the waiting successor (see tenure contenders)")
    parser.add_argument("--timeout", type=handoff_seconds, default=10.0, metavar="SECONDS",
                        help="for the leader to answer, then for the successor to take over "
                        "(default 10)")
    parser.add_argument("--on-failure", choices=("keep", "resign"), default="keep",
                        help="what the leader does when the handoff fails (default keep)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.election.startswith(".tenure-handoff-request/"):
        raise ConfigError(f"{args.election!r} is a handoff request channel, not an election")
    with connect(args, read_only=True) as client:
        outcome = request_handoff(client, args.election, args.to, args.timeout,
                                  args.on_failure)
    release_warnings()
    if args.json:
        print(json.dumps(outcome.as_dict()))
    else:
        print(f"tenure handoff: {outcome.message}")
    return 0 if outcome.ok else EXIT_NOT_HANDED_OFF
