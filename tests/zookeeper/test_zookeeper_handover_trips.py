"""Round trips of a ZooKeeper handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning, in the
default layout and in ``layout=native``: the leader sends ONE request (the ``delete`` of
its node), and the woken successor makes ONE step of ONE round trip (``get_children``
and the owner check + loss watch ``exists`` of its own node, sent together), then the
core's handoff-marker read, ONE round trip (``sync`` and ``get`` sent together).

A round trip is a run of requests a thread sends before it next waits for an answer
(``ZooKeeperConnection.wait``), so pipelined requests count once. Only the campaigning
(resp. resigning) thread is counted: session renewals run on their own thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory
from tenure.store import Wait

pytestmark = [pytest.mark.zookeeper]

TTL = 3.0  # the lab's tickTime 200 ms allows sessions of 0.4-4 s
CALLS = ("create", "delete", "exists", "get", "get_children", "set", "sync")


class Trips:
    """Every request a store sends and every answer it waits for, per thread."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        self.events: list[tuple[float, threading.Thread, str]] = []
        self.steps: list[tuple[float, str]] = []
        self.parked = threading.Event()
        self._conn = conn = store._conn
        self._wrapped: set[int] = set()
        wait = conn.wait

        def waited(pending: Any, timeout: float | None = None) -> Any:
            self.events.append((time.monotonic(), threading.current_thread(), "|"))
            return wait(pending, timeout)

        conn.wait = waited  # type: ignore[method-assign]
        original = store.try_lead

        def try_lead(ticket: Any) -> Any:
            step = original(ticket)
            self.steps.append((time.monotonic(), type(step).__name__))
            if isinstance(step, Wait):
                self.parked.set()
            return step

        store.try_lead = try_lead  # type: ignore[method-assign]

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
def test_a_handover_is_one_round_trip_each_side_plus_the_marker_read(
    cluster: Cluster, layout: str,
) -> None:
    name = f"trips/{time.monotonic_ns()}"
    url = f"{cluster.url}?layout={layout}"
    clients = [tenure.connect(url, ttl=TTL, candidate_id=c) for c in ("a", "b")]
    try:
        lead = clients[0].election(name).campaign(timeout=10)
        counted = [Trips(c) for c in clients]
        leader, successor = 0, 1
        for _ in range(3):
            won: list[tenure.Leadership] = []
            ended = threading.Event()
            counted[successor].parked.clear()

            def campaign(c: tenure.Client = clients[successor],
                         won: list[tenure.Leadership] = won,
                         ended: threading.Event = ended) -> None:
                won.append(c.election(name).campaign(timeout=30))
                ended.set()

            thread = threading.Thread(target=campaign)
            thread.start()
            assert counted[successor].parked.wait(10), "the successor never waited"
            for trips in counted:  # both sessions are open now
                trips.attach()
            start = time.monotonic()
            lead.resign()
            resigned = time.monotonic()
            assert ended.wait(10), "the successor did not win after the resign"
            end = time.monotonic()
            thread.join()
            by_leader = counted[leader].rounds(threading.current_thread(), start, resigned)
            by_successor = counted[successor].rounds(thread, start, end)
            steps = [s for t, s in counted[successor].steps if start <= t <= end]
            detail = f"leader {by_leader}, successor {by_successor}, steps {steps}"
            assert by_leader == [["delete"]], detail
            assert steps == ["Won"], detail
            assert by_successor == [["get_children", "exists"], ["sync", "get"]], detail
            lead = won[0]
            leader, successor = successor, leader
        lead.resign()
    finally:
        for client in clients:
            client.close()
