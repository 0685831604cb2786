"""Round trips of a ZooKeeper handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning, in the
default layout and in ``layout=native``: the leader sends ONE request (the ``delete`` of
its node), and the woken successor makes ONE step of ONE round trip: ``get_children``,
the owner check + loss watch ``exists`` of its own node, and the core's handoff-marker
read (``sync`` then ``get``), all sent together. No round trip after it: the marker
read rides in the winning step (``Ticket.read_on_win``).

A round trip is a run of requests a thread sends before it next waits for an answer
(``ZooKeeperConnection.wait``), so pipelined requests count once. Only the campaigning
(resp. resigning) thread is counted: session renewals run on their own thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from handover_kit import Handover, handovers

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.zookeeper]

TTL = 3.0  # the lab's tickTime 200 ms allows sessions of 0.4-4 s
CALLS = ("create", "delete", "exists", "get", "get_children", "set", "sync")


class Trips:
    """Every request a store sends and every answer it waits for, per thread."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        self.events: list[tuple[float, threading.Thread, str]] = []
        self._conn = conn = store._conn
        self._wrapped: set[int] = set()
        wait = conn.wait

        def waited(pending: Any, timeout: float | None = None) -> Any:
            self.events.append((time.monotonic(), threading.current_thread(), "|"))
            return wait(pending, timeout)

        conn.wait = waited  # type: ignore[method-assign]

    def attach(self) -> None:
        """Counts the requests of the store's current kazoo client (opening the session
        replaces the observer's client, so this runs once the session is open)."""
        zk = self._conn.current
        assert zk is not None, "no kazoo client"
        if id(zk) in self._wrapped:
            return
        self._wrapped.add(id(zk))
        for call in CALLS:
            name = f"{call}_async"
            setattr(zk, name, self._sent(call, getattr(zk, name)))

    def _sent(self, call: str, send: Any) -> Any:
        def sent(*args: Any, **kwargs: Any) -> Any:
            self.events.append((time.monotonic(), threading.current_thread(), call))
            return send(*args, **kwargs)

        return sent

    def rounds(self, thread: threading.Thread, start: float, end: float) -> list[list[str]]:
        """The requests ``thread`` sent in [start, end], grouped by round trip."""
        rounds: list[list[str]] = []
        waited = True
        for t, who, what in self.events:
            if who is not thread or not start <= t <= end:
                continue
            if what == "|":
                waited = True
            elif waited:
                rounds.append([what])
                waited = False
            else:
                rounds[-1].append(what)
        return rounds


@pytest.fixture(scope="module")
def cluster(lab_module: LabFactory) -> Cluster:
    return lab_module.start("zookeeper")


@pytest.mark.parametrize("layout", ["tenure", "native"])
def test_a_handover_is_one_round_trip_each_side(cluster: Cluster, layout: str) -> None:
    main = threading.current_thread()

    def attach(counted: list[Trips]) -> None:
        for trips in counted:  # both sessions are open now
            trips.attach()

    def check(leader: Trips, successor: Trips, done: Handover) -> None:
        by_leader = leader.rounds(main, done.start, done.resigned)
        by_successor = successor.rounds(done.thread, done.start, done.end)
        detail = f"leader {by_leader}, successor {by_successor}, steps {done.steps}"
        assert by_leader == [["delete"]], detail
        assert done.steps == ["Won"], detail
        assert by_successor == [["get_children", "exists", "sync", "get"]], detail

    handovers(f"{cluster.url}?layout={layout}", TTL, f"trips/{time.monotonic_ns()}",
              Trips, check, before_resign=attach)
