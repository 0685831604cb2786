"""``tenure observe``: print one line per leadership change until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from tenure.cli.common import add_backend_arguments, connect, describe_leader, non_negative_seconds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "observe", help="print each leadership change",
        description="Prints the current leader, then one line per change, in token order, "
        "until interrupted (or --timeout passes).",
    )
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--timeout", type=non_negative_seconds, metavar="SECONDS", help="stop after this long"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with connect(args) as client:
        for info in client.election(args.election).observe(stop=stop, timeout=args.timeout):
            print(describe_leader(info, client, args.json), flush=True)
    return 0
