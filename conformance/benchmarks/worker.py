"""One contender as an OS process, driven over stdin by the benchmark.

    python -m tenure.conformance.benchmarks.worker --tool tenure --url URL \
        --election NAME --ttl S --id ID

Reads one command per line: ``campaign`` (blocks until elected), ``resign``,
``counters``, ``exit``. Writes one JSON event per line, each with ``t`` =
``time.monotonic()`` taken right after the step it reports (``CLOCK_MONOTONIC`` is one
clock for every process of the host): ``ready`` (connected), ``campaigning`` (about to
campaign), ``elected`` (campaign returned), ``resigned`` (resign returned), ``lost``
(the tool reported a loss), ``counters``, ``error`` (with the exception), ``exit``.
With ``--wire-trace``, ``elected`` and ``resigned`` also carry ``taps``: the socket
calls since the last such event (:mod:`.wiretap`), collected after ``t`` was taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from typing import Any

from tenure.conformance.benchmarks import wiretap
from tenure.conformance.benchmarks.peers import make_contender
from tenure.conformance.suite import register_reference_backends

_out = threading.Lock()


def emit(kind: str, **fields: Any) -> None:
    """Prints one event line (thread-safe)."""
    event = {"kind": kind, "t": time.monotonic(), **fields}
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def taps(traced: bool) -> dict[str, Any]:
    """With ``traced``: ``t`` now and the socket calls recorded so far (drained)."""
    if not traced:
        return {}
    t = time.monotonic()
    return {"t": t, "taps": wiretap.drain()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenure.conformance.benchmarks.worker")
    parser.add_argument("--tool", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--election", required=True)
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--wire-trace", action="store_true",
                        help="record every socket call (tenure.conformance.benchmarks.wiretap)")
    args = parser.parse_args(argv)
    if args.wire_trace:
        wiretap.install()
    register_reference_backends()  # --url may be bully:// (tenure bench --lab bully)

    def on_lost(reason: str, deadline: float | None) -> None:
        emit("lost", reason=reason, deadline=deadline)

    try:
        contender = make_contender(args.tool, args.url, args.election, args.ttl, args.id,
                                   on_lost)
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return 1
    emit("ready")
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "campaign":
                emit("campaigning")
                fields = contender.campaign()
                emit("elected", **fields, **taps(args.wire_trace))
            elif command == "resign":
                contender.resign()
                emit("resigned", **taps(args.wire_trace))
            elif command == "counters":
                emit("counters", **contender.counters())
            elif command == "exit":
                break
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return 1
    finally:
        try:
            contender.close()
        finally:
            emit("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
