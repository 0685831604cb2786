"""One candidate process of ``tenure demo``.

    python -m tenure.demo_worker BACKEND ELECTION FENCE_DB NAME TTL

Campaigns; while leader, writes to a fenced resource every 0.25 s -- WITHOUT checking
``ensure()`` or ``lost`` first, like a careless program would -- and steps down only when
the fencing check refuses a write. So a leader that was paused past its TTL and resumed
always makes one stale write, which the fence refuses, before it stops: the demo shows
the fence, not the leader's own bookkeeping, stopping it.

Reports its progress as JSON lines on stdout, one object per line with an ``event`` key
(see :class:`Reporter`); nothing else is written to stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

import tenure
from tenure.errors import TenureError
from tenure.leadership import Leadership, State

WRITE_EVERY = 0.25
LOST_REPORT_TIMEOUT = 10.0
USAGE = "usage: python -m tenure.demo_worker BACKEND ELECTION FENCE_DB NAME TTL"


class Reporter:
    """Writes events as JSON lines to one stream, from any thread.

    Promises: each event is one whole line (serialised first, then written and flushed
    under one lock), so events reported at the same moment by the ``on_lost`` callback
    (a tenure thread) and by the write loop never share or split a line. Does not
    promise anything about output written to the stream by other means."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, **event: object) -> None:
        line = json.dumps(event) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Runs one candidate until it steps down; returns the exit status (0 after stepping
    down, 1 if the store failed -- reported as an ``error`` event -- and 2 on bad
    arguments)."""
    if len(argv) != 5:
        print(f"{USAGE}\n(got {len(argv)} arguments)", file=sys.stderr)
        return 2
    backend, election, fence_path, name, ttl_text = argv
    try:
        ttl = float(ttl_text)
    except ValueError:
        print(f"{USAGE}\nTTL must be a number of seconds, got {ttl_text!r}", file=sys.stderr)
        return 2
    report = Reporter(out if out is not None else sys.stdout)
    try:
        return _candidate(report, backend, election, fence_path, name, ttl)
    except TenureError as exc:
        report(event="error", message=str(exc))
        return 1


def _candidate(
    report: Reporter, backend: str, election: str, fence_path: str, name: str, ttl: float
) -> int:
    client = tenure.connect(backend, ttl=ttl, candidate_id=name)
    guard = tenure.FencingGuard(fence_path)
    try:
        report(event="waiting")

        lost_reported = threading.Event()

        def on_lost(lost: Leadership, reason: str) -> None:
            report(event="lost", token=lost.token, reason=reason)
            lost_reported.set()

        lead = client.election(election).campaign(value=name, on_lost=on_lost)
        report(event="elected", token=lead.token)
        while True:
            time.sleep(WRITE_EVERY)  # the pace of a busy leader, not a synchronisation
            tried_at = time.monotonic()
            accepted = guard.accept("demo-resource", lead.token)
            state = lead.state  # after the write: a careless program looks only afterwards
            report(event="write", token=lead.token, accepted=accepted, tried_at=tried_at,
                   state=state.value)
            if not accepted:
                if state is State.LOST:
                    # on_lost may still be running in the tenure thread that found the
                    # loss: let its report out before this process ends.
                    lost_reported.wait(LOST_REPORT_TIMEOUT)
                lead.resign()  # a no-op once lost; a still-held leadership is given back
                report(event="stepped-down", token=lead.token, state=lead.state.value,
                       reason=lead.lost_reason)
                return 0
    finally:
        guard.close()
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
