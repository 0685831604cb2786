"""A candidate as a separate OS process, for the conformance suite and the tests.

    python -m tenure.conformance.suite.candidate --backend URL --election NAME \
        --history FILE [--ttl S] [--hold S] [--rounds N] [--fence FILE] [--id ID]

Campaigns; while leader, every ``--tick`` seconds records ``valid`` (with its deadline)
if the deadline has not passed, then does a fenced write (if ``--fence``) and a store
guarded write -- deliberately checking for loss only AFTER acting, so a leader paused
in its sleep acts once on resuming, and the history shows whether the fence and the
store refused it. Resigns after ``--hold``
seconds (default: never), campaigns again, until ``--rounds`` leaderships are done.
Every event also goes to stdout as a JSON line, for test harnesses to wait on. A
campaign refused by configuration (a migration stage the election has left) records
``refused`` with the reason and exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import tenure
from tenure.conformance.suite import register_reference_backends
from tenure.conformance.suite.broken import BROKEN_MODES, break_client
from tenure.conformance.suite.history import record
from tenure.errors import NotLeader, StoreUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenure.conformance.suite.candidate")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--election", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--ttl", type=float)
    parser.add_argument("--id")
    parser.add_argument("--hold", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.05)
    parser.add_argument("--fence")
    parser.add_argument("--broken", choices=BROKEN_MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    register_reference_backends()  # --backend may be bully://

    def emit(kind: str, **fields: Any) -> None:
        event = {"kind": kind, "cid": client.candidate_id, "election": args.election,
                 "t": time.monotonic(), **fields}
        record(args.history, **event)
        print(json.dumps(event), flush=True)

    client = tenure.connect(args.backend, ttl=args.ttl, candidate_id=args.id)
    oblivious = args.broken == "ignore-deadline"
    believed_deadline = (
        break_client(client, args.broken) if args.broken else lambda lead: lead.deadline
    )
    guard = tenure.FencingGuard(args.fence) if args.fence else None
    election = client.election(args.election)
    emit("started")
    def on_lost(lost: tenure.Leadership, reason: str) -> None:
        if not oblivious:
            emit("lost", token=lost.token, reason=reason)

    for _ in range(args.rounds):
        try:
            lead = election.campaign(value=client.candidate_id, on_lost=on_lost)
        except tenure.ConfigError as exc:  # e.g. a migration stage the election has left
            emit("refused", reason=str(exc))
            client.close()
            return 3
        emit("elected", token=lead.token, deadline=believed_deadline(lead))
        held_until = None if args.hold is None else time.monotonic() + args.hold
        while held_until is None or time.monotonic() < held_until:
            if time.monotonic() < believed_deadline(lead):
                emit("valid", token=lead.token, deadline=believed_deadline(lead))
            if guard is not None:
                sent = time.monotonic()
                accepted = guard.accept(args.election, lead.token)
                emit("fenced", token=lead.token, accepted=accepted, resource=args.election,
                     t=sent, t_done=time.monotonic())
            sent = time.monotonic()
            try:
                # Straight to the store, past the client's own deadline check: this
                # proves the store's transaction refuses a superseded leader.
                client.store.guarded_write(
                    lead.ticket, f"conformance/{args.election}", str(lead.token).encode()
                )
                ok = True
            except (NotLeader, StoreUnavailable):
                ok = False
            emit("guarded", token=lead.token, ok=ok, t=sent)
            if lead.lost and not oblivious:
                break
            time.sleep(args.tick)
        if lead.lost and not oblivious:
            emit("lost", token=lead.token, reason=lead.lost_reason)
        else:
            emit("resign", token=lead.token)
            lead.resign()
            emit("resigned", token=lead.token)
    client.close()
    emit("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
