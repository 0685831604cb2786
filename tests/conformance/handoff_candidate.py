"""A candidate that campaigns once and then holds, as a separate OS process, for the
handoff and priority tests: prints one JSON line per event.

    python tests/conformance/handoff_candidate.py URL ELECTION TTL ID [--accept] [--priority N]

``--accept``: lead through ``Election.run(..., accept_handoff_requests=True)`` instead
(serves ``tenure handoff`` requests; prints started/stopped per leadership).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import tenure


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("election")
    parser.add_argument("ttl", type=float)
    parser.add_argument("candidate_id")
    parser.add_argument("--accept", action="store_true")
    parser.add_argument("--priority", type=int)
    args = parser.parse_args()
    extra = {} if args.priority is None else {"priority": args.priority}
    with tenure.connect(args.url, ttl=args.ttl, candidate_id=args.candidate_id) as client:
        election = client.election(args.election)
        emit("connected")
        if args.accept:
            election.run(
                lambda lead: lead.ended.wait(),
                on_started=lambda lead: emit("started", token=lead.token),
                on_stopped=lambda lead, why: emit("stopped", token=lead.token, reason=why),
                accept_handoff_requests=True, **extra)  # type: ignore[arg-type]
            return 0
        lead = election.campaign(**extra)  # type: ignore[arg-type]
        emit("elected", token=lead.token)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
