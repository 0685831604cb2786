"""Round trips of an etcd handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning: the leader
sends ONE transaction (the withdraw: delete its key if its create revision is still
its own); the successor, woken by its watch on the key ahead, makes ONE step whose only
request is ONE read-only transaction (its key, the key ahead, and the core's handoff
marker, at one revision: the one linearizable read a waiter needs). The won key's
guard watch is created by the store's guard thread, not by the campaigning thread:
pyetcd's watch creation waits for etcd's answer, a second round trip when it ran in
the winning step.

Every unary call goes through ``EtcdConnection.rpc`` and every watch creation through
``EtcdConnection.watch``; both are recorded with their thread. Keepalives and watch
events run on other threads and are not counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from handover_kit import Handover, handovers

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster, wait_until

pytestmark = [pytest.mark.etcd]

TTL = 4.0


class Requests:
    """Every call and watch creation a client's etcd connection makes, with its thread."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, EtcdStore)
        self.sent: list[tuple[float, threading.Thread, str]] = []
        connection = store._etcd
        rpc, watch = connection.rpc, connection.watch

        def counted_rpc(what: str, call: Callable[[], Any], **kwargs: Any) -> Any:
            self._record(what)
            return rpc(what, call, **kwargs)

        def counted_watch(key: bytes, *args: Any, **kwargs: Any) -> Any:
            self._record("watch")
            return watch(key, *args, **kwargs)

        connection.rpc = counted_rpc  # type: ignore[method-assign]
        connection.watch = counted_watch  # type: ignore[method-assign]

    def _record(self, what: str) -> None:
        self.sent.append((time.monotonic(), threading.current_thread(), what))

    def by(self, thread: threading.Thread, start: float, end: float) -> list[str]:
        return [what for t, who, what in self.sent if who is thread and start <= t <= end]

    def by_name(self, name: str, start: float) -> list[str]:
        return [what for t, who, what in self.sent if who.name == name and t >= start]


def test_a_handover_is_one_request_each_side_and_the_guard_is_armed_aside(
        etcd_cluster: Cluster) -> None:
    main = threading.current_thread()
    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        by_leader = leader.by(main, done.start, done.resigned)
        by_successor = successor.by(done.thread, done.start, done.end)
        detail = f"leader sent {by_leader}, successor {by_successor}, steps {done.steps}"
        assert by_leader == ["withdraw"], detail
        assert by_successor == ["try lead"], detail
        assert done.steps == ["Won"], detail
        # The guard of the new leadership is still armed, on the guard thread.
        wait_until(lambda: successor.by_name("tenure-etcd-guards", done.start) == ["watch"],
                   10, "the winner's guard watch was never created")

    handovers(etcd_cluster.url, TTL, "trips", Requests, check, rounds=4)
