"""Round trips of a Consul handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning: the leader
sends ONE transaction (release and leave the queue); the successor, woken by its
blocking query on the entry ahead, makes ONE step whose only request is ONE lock
transaction (it also checks the entries seen ahead are gone, instead of reading the
queue), then the core's handoff-marker read, ONE ``GET``. In ``layout=native`` (no
queue) the step is a ``GET`` of the lock key and the lock transaction, as before.

Consul's HTTP API answers each request before the next is sent, so every request the
campaigning (resp. resigning) thread sends through ``ConsulHTTP.call`` is one round
trip; the renewals, the blocking queries and the leadership guard's check run on
other threads and are not counted. The fallbacks are checked too: a queue entry left
without its session ahead makes the transaction fail and the queue be read again; more
entries ahead than a transaction takes are read, not checked.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tenure
from tenure.adapters.consul import TXN_CHECKS, ConsulStore
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster
from tenure.store import Wait, Won

pytestmark = [pytest.mark.consul]

TTL = 6.0


class Requests:
    """Every request a client's store sends, with its thread and time."""

    def __init__(self, client: tenure.Client) -> None:
        store = client.store
        assert isinstance(store, ConsulStore)
        self.sent: list[tuple[float, threading.Thread, str]] = []
        self.steps: list[tuple[float, str]] = []
        self.parked = threading.Event()
        call = store.http.call

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            self.sent.append((time.monotonic(), threading.current_thread(),
                              self._kind(method, path)))
            return call(method, path, *args, **kwargs)

        store.http.call = counted  # type: ignore[method-assign]
        original = store.try_lead

        def try_lead(ticket: Any) -> Any:
            step = original(ticket)
            self.steps.append((time.monotonic(), type(step).__name__))
            if isinstance(step, Wait):
                self.parked.set()
            return step

        store.try_lead = try_lead  # type: ignore[method-assign]

    @staticmethod
    def _kind(method: str, path: str) -> str:
        if path == "/v1/txn":
            return "txn"
        if method == "GET" and "/~queue/" in path:
            return "GET queue"
        if method == "GET" and path.endswith("/~leader"):
            return "GET leader"
        if method == "GET" and "/data/" in path:
            return "GET data (marker)"
        return f"{method} {path}"

    def by(self, thread: threading.Thread, start: float, end: float) -> list[str]:
        return [what for t, who, what in self.sent if who is thread and start <= t <= end]


def handover(clients: list[tenure.Client], counted: list[Requests], name: str,
             lead: tenure.Leadership, successor: int,
             before_resign: Any = None) -> tuple[tenure.Leadership, list[str], list[str],
                                                 list[str]]:
    """Resigns ``lead`` while ``clients[successor]`` campaigns; returns the new
    leadership and the requests of the leader's and the successor's threads."""
    won: list[tenure.Leadership] = []
    ended = threading.Event()
    counted[successor].parked.clear()

    def campaign() -> None:
        won.append(clients[successor].election(name).campaign(timeout=30))
        ended.set()

    thread = threading.Thread(target=campaign)
    thread.start()
    assert counted[successor].parked.wait(10), "the successor never waited"
    if before_resign is not None:
        before_resign()
    start = time.monotonic()
    lead.resign()
    resigned = time.monotonic()
    assert ended.wait(15), "the successor did not win after the resign"
    end = time.monotonic()
    thread.join()
    steps = [s for t, s in counted[successor].steps if start <= t <= end]
    return (won[0], counted[1 - successor].by(threading.current_thread(), start, resigned),
            counted[successor].by(thread, start, end), steps)


@pytest.mark.parametrize("layout", ["tenure", "native"])
def test_a_handover_is_one_request_each_side_plus_the_marker_read(
    consul_cluster: Cluster, layout: str,
) -> None:
    name = f"trips/{time.monotonic_ns()}"
    url = f"{consul_cluster.url}?layout={layout}"
    clients = [tenure.connect(url, ttl=TTL, candidate_id=c) for c in ("a", "b")]
    try:
        lead = clients[0].election(name).campaign(timeout=10)
        counted = [Requests(c) for c in clients]
        successor = 1
        expected = ["txn"] if layout == "tenure" else ["GET other", "txn"]
        for _ in range(3):
            lead, by_leader, by_successor, steps = handover(clients, counted, name, lead,
                                                            successor)
            detail = f"leader sent {by_leader}, successor {by_successor}, steps {steps}"
            assert by_leader == ["txn"], detail
            assert steps == ["Won"], detail
            if layout == "native":  # the lock key is the election's own
                by_successor = ["GET other" if r.startswith("GET /v1/kv/") else r
                                for r in by_successor]
            assert by_successor == [*expected, "GET data (marker)"], detail
            successor = 1 - successor
        lead.resign()
    finally:
        for client in clients:
            client.close()


def test_an_entry_ahead_left_without_session_falls_back_to_reading_the_queue(
    consul_cluster: Cluster,
) -> None:
    """``check-not-exists`` fails on a key that stays without a session; the step then
    reads the queue (which skips such an entry) and still wins in the same step."""
    url, _ = parse_backend_url(consul_cluster.url)
    name = f"trips/{time.monotonic_ns()}"
    leader, waiter = ConsulStore.from_url(url), ConsulStore.from_url(url)
    try:
        for store in (leader, waiter):
            store.open_session(TTL)
        first = leader.enqueue(name, "a", b"")
        assert isinstance(leader.try_lead(first), Won)
        # An entry that will lose its session but keep its key, queued between the two.
        stale = f"{leader._queue_prefix(name)}stale"
        _, errors = leader.http.txn([{"Verb": "lock", "Key": stale, "Session": leader._session}])
        assert not errors, errors
        ticket = waiter.enqueue(name, "b", b"")
        step = waiter.try_lead(ticket)
        assert isinstance(step, Wait) and ticket.ahead == [first.key, stale], ticket.ahead
        step.signal.close()
        _, errors = leader.http.txn([{"Verb": "unlock", "Key": stale, "Session": leader._session}])
        assert not errors, errors
        leader.withdraw(first)
        sent: list[str] = []
        call = waiter.http.call

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(Requests._kind(method, path))
            return call(method, path, *args, **kwargs)

        waiter.http.call = counted  # type: ignore[method-assign]
        assert isinstance(waiter.try_lead(ticket), Won), sent
        assert sent == ["txn", "GET queue", "txn"], sent
        waiter.withdraw(ticket)
        leader.http.txn([{"Verb": "delete", "Key": stale}])
    finally:
        for store in (leader, waiter):
            store.close_session()
            store.close()


def test_more_entries_ahead_than_a_transaction_takes_are_read_not_checked(
    consul_cluster: Cluster,
) -> None:
    """Consul takes 64 operations per transaction: with 63 entries ahead the step reads
    the queue and locks (no transaction of 65 operations, which Consul would refuse)."""
    url, _ = parse_backend_url(consul_cluster.url)
    name = f"trips/{time.monotonic_ns()}"
    leader, waiter = ConsulStore.from_url(url), ConsulStore.from_url(url)
    try:
        for store in (leader, waiter):
            store.open_session(TTL)
        prefix = leader._queue_prefix(name)
        crowd = [f"{prefix}crowd-{i:02d}" for i in range(TXN_CHECKS + 1)]
        for i in range(0, len(crowd), 32):
            _, errors = leader.http.txn([{"Verb": "lock", "Key": key, "Session": leader._session}
                                         for key in crowd[i:i + 32]])
            assert not errors, errors
        ticket = waiter.enqueue(name, "b", b"")
        step = waiter.try_lead(ticket)
        assert isinstance(step, Wait) and ticket.ahead == crowd, ticket.ahead
        step.signal.close()
        for i in range(0, len(crowd), 32):
            _, errors = leader.http.txn([{"Verb": "delete", "Key": key}
                                         for key in crowd[i:i + 32]])
            assert not errors, errors
        sent: list[str] = []
        call = waiter.http.call

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(Requests._kind(method, path))
            return call(method, path, *args, **kwargs)

        waiter.http.call = counted  # type: ignore[method-assign]
        assert isinstance(waiter.try_lead(ticket), Won), sent
        assert sent == ["GET queue", "txn"], sent
        waiter.withdraw(ticket)
    finally:
        for store in (leader, waiter):
            store.close_session()
            store.close()
