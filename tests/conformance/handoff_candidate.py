"""A candidate that campaigns once and then holds, as a separate OS process, for the
handoff and priority tests: prints one JSON line per event.

    python tests/conformance/handoff_candidate.py URL ELECTION TTL ID [PRIORITY]
"""

from __future__ import annotations

import json
import sys
import threading
import time

import tenure


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)


def main() -> int:
    url, election, ttl, candidate_id = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    extra = {"priority": int(sys.argv[5])} if len(sys.argv) > 5 else {}
    with tenure.connect(url, ttl=ttl, candidate_id=candidate_id) as client:
        emit("started")
        lead = client.election(election).campaign(**extra)  # type: ignore[arg-type]
        emit("elected", token=lead.token)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
