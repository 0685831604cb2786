"""The conformance candidate written against ``tenure.aio`` (asyncio), recording the
same history events as ``tenure.conformance.suite.candidate`` for the S1/S2 checker.

    python tests/aio/aio_candidate.py --backend URL --election E --history FILE \
        [--ttl S] [--hold S] [--rounds N] [--tick S] [--fence FILE] --id ID

While it leads it records ``valid`` and does a fenced write every ``--tick`` (an
``asyncio.sleep``, so the loop keeps serving), checking for loss after acting, like
the sync candidate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import tenure
from tenure import aio
from tenure.conformance.suite.history import record


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--election", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--ttl", type=float)
    parser.add_argument("--id", required=True)
    parser.add_argument("--hold", type=float)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.05)
    parser.add_argument("--fence")
    args = parser.parse_args()

    def emit(kind: str, **fields: Any) -> None:
        event = {"kind": kind, "cid": args.id, "election": args.election,
                 "t": time.monotonic(), **fields}
        record(args.history, **event)
        print(json.dumps(event), flush=True)

    guard = tenure.FencingGuard(args.fence) if args.fence else None
    async with await aio.connect(args.backend, ttl=args.ttl, candidate_id=args.id) as client:
        election = client.election(args.election)
        emit("started")
        for _ in range(args.rounds):
            lead = await election.campaign(
                args.id, on_lost=lambda lost, reason: emit("lost", token=lost.token,
                                                           reason=reason))
            emit("elected", token=lead.token, deadline=lead.deadline)
            held_until = None if args.hold is None else time.monotonic() + args.hold
            while held_until is None or time.monotonic() < held_until:
                if time.monotonic() < lead.deadline:
                    emit("valid", token=lead.token, deadline=lead.deadline)
                if guard is not None:
                    sent = time.monotonic()
                    accepted = guard.accept(args.election, lead.token)
                    emit("fenced", token=lead.token, accepted=accepted,
                         resource=args.election, t=sent, t_done=time.monotonic())
                if lead.lost:
                    break
                await asyncio.sleep(args.tick)
            if lead.lost:
                emit("lost", token=lead.token, reason=lead.lost_reason)
            else:
                emit("resign", token=lead.token)
                await lead.resign()
                emit("resigned", token=lead.token)
    emit("exit")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
