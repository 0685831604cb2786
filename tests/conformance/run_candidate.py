"""A candidate that leads through ``Election.run`` (the lead-forever loop), as a
separate OS process for the run-loop tests: prints one JSON line per event.

    python tests/conformance/run_candidate.py URL ELECTION TTL ID
"""

from __future__ import annotations

import json
import sys
import threading
import time

import tenure

_print_lock = threading.Lock()


def emit(kind: str, **fields: object) -> None:
    with _print_lock:
        print(json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)


def main() -> int:
    url, election, ttl, candidate_id = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    client = tenure.connect(url, ttl=ttl, candidate_id=candidate_id)

    def work(lead: tenure.Leadership) -> None:
        emit("working", token=lead.token)
        lead.ended.wait()

    client.election(election).run(
        work,
        on_started=lambda lead: emit("started", token=lead.token),
        on_stopped=lambda lead, why: emit("stopped", token=lead.token, reason=why,
                                          state=lead.state.value),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
