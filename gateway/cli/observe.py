"""``tenure observe``: print one line per leadership change until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from tenure.cli.common import (
    EXIT_STATUS_HELP,
    add_backend_arguments,
    connect,
    describe_leader,
    interrupted,
    non_negative_seconds,
    probe,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "observe", help="print each leadership change",
        description="Prints the current leader, then one line per change, in token order, "
        "until interrupted (or --timeout passes). A store that cannot be reached at the "
        "start is an error; later outages are retried, with a warning. Only reads: a "
        "SQLite store that does not exist is an error, not created.",
        epilog=EXIT_STATUS_HELP + "; 143 stopped by SIGTERM",
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--timeout", type=non_negative_seconds, metavar="SECONDS",
        help="stop after this long, e.g. 30 or 30s (exit 0)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    caught: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        stop.set()

    # Until here (connecting, the first read) Ctrl-C raises KeyboardInterrupt, which
    # tenure.cli.main turns into the same one line and exit 130.
    with connect(args, read_only=True) as client:
        election = client.election(args.election)
        probe(election)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        for info in election.observe(stop=stop, timeout=args.timeout):
            print(describe_leader(info, client, args.json), flush=True)
    return interrupted("observe", caught[0]) if caught else 0
