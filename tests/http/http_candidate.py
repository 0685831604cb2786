"""A candidate that leads through the HTTP gateway only (stdlib HTTP, no tenure client).

    python tests/http/http_candidate.py --url URL --election E --history FILE \
        [--mode handle|stream] [--hold S] [--rounds N] [--tick S] [--id ID]

Records the same history events as ``tenure.conformance.suite.candidate`` (``elected``,
``valid``, ``lost``, ``resign``) so :func:`tenure.conformance.suite.history.check` can judge
S1/S2 over HTTP. Handle mode: after winning, keeps alive every ``--tick`` and believes
in leadership until ``t_sent + valid_for`` of the last successful keepalive. Stream
mode: holds the ``/hold`` stream open; leads until the stream says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpkit import call, sse

from tenure.conformance.suite.history import record


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--election", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--mode", choices=("handle", "stream"), default="handle")
    parser.add_argument("--hold", type=float)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.1)
    parser.add_argument("--id", required=True)
    args = parser.parse_args()

    def emit(kind: str, **fields: Any) -> None:
        event = {"kind": kind, "cid": args.id, "election": args.election,
                 "t": time.monotonic(), **fields}
        record(args.history, **event)
        print(json.dumps(event), flush=True)

    base = f"{args.url}/v1/elections/{args.election}"
    emit("started")
    for _ in range(args.rounds):
        if args.mode == "stream":
            for event, data, received in sse(base + "/hold", "POST", {"candidate_id": args.id},
                                              timeout=600):
                if event == "elected":
                    emit("elected", token=data["token"], deadline=received)
                elif event == "heartbeat":
                    emit("valid", token=data["token"], deadline=received)
                else:
                    emit("lost", token=data["token"], reason=data["reason"])
                    break
            continue
        status, grant = call("POST", base + "/campaign", {"candidate_id": args.id}, timeout=600)
        assert status == 200, (status, grant)
        token, handle = grant["token"], grant["handle"]
        sent = time.monotonic()
        status, state = call("POST", f"{args.url}/v1/leaderships/{handle}/keepalive")
        if status != 200:
            emit("lost", token=token, reason=str(state))
            continue
        emit("elected", token=token, deadline=sent + state["valid_for"] * 0.99)
        held_until = None if args.hold is None else time.monotonic() + args.hold
        lost = False
        while held_until is None or time.monotonic() < held_until:
            time.sleep(args.tick)
            sent = time.monotonic()
            status, state = call("POST", f"{args.url}/v1/leaderships/{handle}/keepalive")
            if status != 200:
                emit("lost", token=token, reason=str(state))
                lost = True
                break
            emit("valid", token=token, deadline=sent + state["valid_for"] * 0.99)
        if not lost:
            emit("resign", token=token)
            call("DELETE", f"{args.url}/v1/leaderships/{handle}")
            emit("resigned", token=token)
    emit("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
