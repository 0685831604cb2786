"""Deliberately broken candidates, to prove the checker catches what it must.

Test-only; never use these elsewhere. ``break_client(client, how)`` makes a real client
misbehave in one of these ways:

* ``ignore-deadline``: the candidate believes it leads forever -- its recorded
  deadlines are far in the future, as if it never checked its lease (the Jepsen
  finding about etcd's lock recipe). A pause past the TTL then yields two leaders in
  the history (S1).
* ``token-reuse``: the store's ``try_lead`` step, wrapped, hands out the same fencing
  token for every leadership it wins (like a "token" taken from a value that does not
  increase): S2.
* ``majority-of-one``: the Redis quorum guard disabled -- one instance out of N is
  enough to lead, as with naive single-key locks: under a partition each side leads (S1).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenure.client import Client, Leadership
from tenure.store import Step, Ticket, Won

BROKEN_MODES = ("ignore-deadline", "token-reuse", "majority-of-one")
FOREVER = 3600.0


def break_client(client: Client, how: str) -> Callable[[Leadership], float]:
    """Applies the breakage to ``client``; returns the deadline function the candidate
    must record (the honest one is ``lambda lead: lead.deadline``)."""
    if how == "ignore-deadline":
        return lambda lead: time.monotonic() + FOREVER
    if how == "token-reuse":
        store = client.store
        honest = store.try_lead

        def reused_token(ticket: Ticket) -> Step:
            step = honest(ticket)  # the store's own decision; only the token is wrong
            return Won(1) if isinstance(step, Won) else step

        store.try_lead = reused_token  # type: ignore[method-assign]
        return lambda lead: lead.deadline
    if how == "majority-of-one":
        if not hasattr(client.store, "majority"):
            raise ValueError(f"{client.store.description} has no quorum to disable")
        client.store.majority = 1
        return lambda lead: lead.deadline
    raise ValueError(f"unknown breakage {how!r}; choose one of {', '.join(BROKEN_MODES)}")
