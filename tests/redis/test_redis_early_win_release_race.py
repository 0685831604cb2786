"""Review R1 (session 4): a Redis win taken by the enqueue script and given back by a
renewal (``unclaimed``) is released on a separate thread by ticket id. If the late
first step re-takes the key for the same ticket before that thread's RELEASE lands,
the RELEASE deletes the NEW leader key: a second candidate then wins while the first
still holds a valid leadership (two leaders). The release thread is only delayed here
(a scheduling delay), nothing else is patched. Failed on 78bb951..f1a47d3 (a won with
token 2, then b with token 3 while a's session lived); passes since da9bcd2 (the late
step raises SessionExpired and the core queues a new entry). ~2 s."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tenure
from tenure.adapters.redis import RedisStore
from tenure.conformance.lab.fixtures import LabFactory
from tenure.errors import SessionExpired
from tenure.store import Won

pytestmark = [pytest.mark.redis]

TTL = 1.0


def test_a_late_first_step_keeps_the_key_the_renewal_gives_back(
    lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = lab.start("redis", nodes=1)
    entered, gate = threading.Event(), threading.Event()
    give_back = RedisStore._forget  # the give-back withdraws the entry (was _release)

    def delayed(self: RedisStore, ticket: Any) -> int:
        if threading.current_thread().name == "tenure-redis-release":
            entered.set()
            gate.wait(5)
        return give_back(self, ticket)

    monkeypatch.setattr(RedisStore, "_forget", delayed)
    name = f"review/early/{time.monotonic_ns()}"
    with tenure.connect(cluster.url, ttl=TTL, candidate_id="a") as a, \
            tenure.connect(cluster.url, ttl=TTL, candidate_id="b") as b:
        a.keeper.ensure_open()
        ticket = a.store.enqueue(name, "a", b"")
        assert ticket.early is not None  # the enqueue took the free key
        # the keeper's renewal TTL / 3 later gives the unstepped win back (on a thread)
        assert entered.wait(5), "no renewal gave the early win back"
        try:  # the late first step: must not take the key the give-back releases
            step = a.store.try_lead(ticket)
        except SessionExpired:  # the entry died: the core queues a new one
            step = None
        gate.set()  # the give-back's RELEASE (now WITHDRAW) lands now
        time.sleep(0.2)
        b.keeper.ensure_open()
        other = b.store.enqueue(name, "b", b"")
        deadline = time.monotonic() + 3 * TTL  # b waits a TTL on a free key behind a
        second = None
        while time.monotonic() < deadline:
            second = b.store.try_lead(other)
            if isinstance(second, Won):
                break
            time.sleep(0.05)
        if isinstance(step, Won):  # a leads (its session is renewed): b must not win
            assert not isinstance(second, Won), "two leaders: b won while a holds the key"
