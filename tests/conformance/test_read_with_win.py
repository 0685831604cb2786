"""The optional store capability "read with the win" (``Ticket.read_on_win``), per backend.

Every adapter but Kubernetes reads the key the core names in the very step that decides
Won (so the handoff gate costs no round trip of its own); what it returns must be what
:meth:`Store.read` would: the value the previous leader wrote with ``guarded_write``
before its release, or None for a key never written. Kubernetes keeps the default (a
plain Won: the core reads separately). Round trips are counted in
tests/*/test_*_handover_trips.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tenure.adapters import open_store
from tenure.campaign import wait_for
from tenure.config import parse_backend_url
from tenure.conformance.suite.backends import Target
from tenure.store import Store, Ticket, Won

DEFAULT_ONLY = {"kubernetes"}
"""Backends whose adapter keeps the core's separate read."""


def lead(store: Store[Any], ticket: Ticket, timeout: float = 20.0) -> Won:
    """Steps ``ticket`` until it wins, as the core does (no timing assumption)."""
    deadline = time.monotonic() + timeout
    while True:
        step = store.try_lead(ticket)
        if isinstance(step, Won):
            ticket.won = True
            return step
        with step.signal:
            assert time.monotonic() < deadline, f"{ticket.candidate_id} never won"
            wait_for(step, deadline, threading.Event())


def test_the_winning_step_reads_what_the_previous_leader_wrote(target: Target) -> None:
    url, _ = parse_backend_url(target.url)
    stores = [open_store(url), open_store(url)]
    name = target.election("read-with-win")
    key, unwritten = f".tenure-handoff/{name}", f".tenure-handoff/{name}-none"
    try:
        for store in stores:
            store.open_session(min(max(store.limits.min_ttl, 4.0), store.limits.max_ttl))
        first = stores[0].enqueue(name, "a", b"")
        first.read_on_win = unwritten
        won = lead(stores[0], first)
        implemented = target.profile.name not in DEFAULT_ONLY
        assert won.read_done is implemented, won
        assert won.read is None, won
        stores[0].guarded_write(first, key, b"marker-1")
        second = stores[1].enqueue(name, "b", b"")
        second.read_on_win = key
        step = stores[1].try_lead(second)
        assert not isinstance(step, Won), "won while the first entry leads"
        step.signal.close()
        stores[0].withdraw(first)
        won = lead(stores[1], second)
        assert won.read_done is implemented, won
        if implemented:
            assert won.read == b"marker-1", won
        assert stores[1].read(key) == b"marker-1"
        stores[1].withdraw(second)
    finally:
        for store in stores:
            store.close_session()
            store.close()
