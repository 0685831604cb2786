"""One candidate process of ``tenure demo``.

Campaigns; while leader, writes to a fenced resource every 0.25 s -- WITHOUT checking
``ensure()`` first, like a careless program would -- so the demo can show the fencing
check refusing a stale leader. Reports JSON lines on stdout.
"""

from __future__ import annotations

import json
import sys
import time

import tenure

WRITE_EVERY = 0.25


def report(**event: object) -> None:
    """Prints one JSON event line for the demo's coordinator."""
    print(json.dumps(event), flush=True)


def main(argv: list[str]) -> int:
    """``python -m tenure.demo_worker BACKEND ELECTION FENCE_DB NAME TTL``."""
    backend, election, fence_path, name, ttl = argv
    client = tenure.connect(backend, ttl=float(ttl), candidate_id=name)
    guard = tenure.FencingGuard(fence_path)
    report(event="waiting")
    lead = client.election(election).campaign(
        value=name,
        on_lost=lambda lost, reason: report(event="lost", token=lost.token, reason=reason),
    )
    report(event="elected", token=lead.token)
    while True:
        time.sleep(WRITE_EVERY)
        accepted = guard.accept("demo-resource", lead.token)
        report(event="write", token=lead.token, accepted=accepted)
        if lead.lost:
            report(event="stepped-down", token=lead.token)
            client.close()
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
