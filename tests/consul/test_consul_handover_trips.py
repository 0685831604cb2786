"""Round trips of a Consul handover, counted (a load-independent regression guard).

From the leader's ``resign()`` to the successor's ``campaign()`` returning: the leader
sends ONE transaction (release and leave the queue); the successor, woken by its
blocking query on the entry ahead, makes ONE step whose only request is ONE lock
transaction (it also checks the entries seen ahead are gone, instead of reading the
queue, and reads the core's handoff marker, ``get-or-empty``): no ``GET`` of the marker
after it. In ``layout=native`` (no queue) the step is a ``GET`` of the lock key and the
lock transaction (with the marker read).

Consul's HTTP API answers each request before the next is sent, so every request the
campaigning (resp. resigning) thread sends through ``ConsulHTTP.call`` is one round
trip; the renewals, the blocking queries and the leadership guard's check run on
other threads and are not counted. The fallbacks are checked too: a queue entry left
without its session ahead makes the transaction fail and the queue be read again; more
entries ahead than a transaction takes are read, not checked.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from handover_kit import Handover, handovers

import tenure
from tenure.adapters.consul import TXN_CHECKS, ConsulStore
from tenure.adapters.consul_http import BlockingQuery, ConsulHTTP, KeyWatch, Line
from tenure.config import BackendURL, parse_backend_url
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
        call = store.http.call

        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            self.sent.append((time.monotonic(), threading.current_thread(),
                              self._kind(method, path)))
            return call(method, path, *args, **kwargs)

        store.http.call = counted  # type: ignore[method-assign]

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


@pytest.mark.parametrize("layout", ["tenure", "native"])
def test_a_handover_is_one_request_each_side(consul_cluster: Cluster, layout: str) -> None:
    main = threading.current_thread()
    expected = ["txn"] if layout == "tenure" else ["GET other", "txn"]

    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        by_leader = leader.by(main, done.start, done.resigned)
        by_successor = successor.by(done.thread, done.start, done.end)
        detail = f"leader sent {by_leader}, successor {by_successor}, steps {done.steps}"
        assert by_leader == ["txn"], detail
        assert done.steps == ["Won"], detail
        if layout == "native":  # the lock key is the election's own
            by_successor = ["GET other" if r.startswith("GET /v1/kv/") and "/data/" not in r
                            else r for r in by_successor]
        assert by_successor == expected, detail

    handovers(f"{consul_cluster.url}?layout={layout}", TTL, f"trips/{time.monotonic_ns()}",
              Requests, check)


@contextlib.contextmanager
def two_stores(url: BackendURL) -> Iterator[tuple[ConsulStore, ConsulStore]]:
    """A leader's and a waiter's store on ``url``, each with its session open."""
    leader, waiter = ConsulStore.from_url(url), ConsulStore.from_url(url)
    try:
        for store in (leader, waiter):
            store.open_session(TTL)
        yield leader, waiter
    finally:
        for store in (leader, waiter):
            store.close_session()
            store.close()


def counted_calls(store: ConsulStore) -> list[str]:
    """The kinds of the requests ``store`` sends from now on (see ``Requests._kind``)."""
    sent: list[str] = []
    call = store.http.call

    def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(Requests._kind(method, path))
        return call(method, path, *args, **kwargs)

    store.http.call = counted  # type: ignore[method-assign]
    return sent


def test_an_entry_ahead_left_without_session_falls_back_to_reading_the_queue(
    consul_cluster: Cluster,
) -> None:
    """``check-not-exists`` fails on a key that stays without a session; the step then
    reads the queue (which skips such an entry) and still wins in the same step."""
    url, _ = parse_backend_url(consul_cluster.url)
    name = f"trips/{time.monotonic_ns()}"
    with two_stores(url) as (leader, waiter):
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
        sent = counted_calls(waiter)
        assert isinstance(waiter.try_lead(ticket), Won), sent
        assert sent == ["txn", "GET queue", "txn"], sent
        waiter.withdraw(ticket)
        leader.http.txn([{"Verb": "delete", "Key": stale}])


def test_more_entries_ahead_than_a_transaction_takes_are_read_not_checked(
    consul_cluster: Cluster,
) -> None:
    """Consul takes 64 operations per transaction: with 63 entries ahead the step reads
    the queue and locks (no transaction of 65 operations, which Consul would refuse)."""
    url, _ = parse_backend_url(consul_cluster.url)
    name = f"trips/{time.monotonic_ns()}"
    with two_stores(url) as (leader, waiter):
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
        sent = counted_calls(waiter)
        assert isinstance(waiter.try_lead(ticket), Won), sent
        assert sent == ["GET queue", "txn"], sent
        waiter.withdraw(ticket)


class Everything:
    """Every request of each client's store, on any thread (renewals aside): pooled
    requests, blocking queries of a wait (:class:`KeyWatch`) and of the Watcher."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.of: dict[int, list[tuple[float, str]]] = {}
        send, watch, query = Line._send, KeyWatch._send, BlockingQuery.get

        def line_send(line: Line, method: str, target: str, *args: Any) -> Any:
            if "/session/renew/" not in target:
                self._add(line.client, "read txn" if target.startswith("/v1/txn?consistent")
                          else "txn" if target.startswith("/v1/txn") else f"{method} kv")
            return send(line, method, target, *args)

        def watch_send(keywatch: KeyWatch) -> Any:
            self._add(keywatch.client, "wait")
            return watch(keywatch)

        def watcher_get(blocking: BlockingQuery, path: str, *args: Any) -> Any:
            self._add(blocking.client, "guard" if path.endswith("/~leader") else "watch folder")
            return query(blocking, path, *args)

        monkeypatch.setattr(Line, "_send", line_send)
        monkeypatch.setattr(KeyWatch, "_send", watch_send)
        monkeypatch.setattr(BlockingQuery, "get", watcher_get)

    def _add(self, client: ConsulHTTP, kind: str) -> None:
        self.of.setdefault(id(client), []).append((time.monotonic(), kind))

    def counter(self, client: tenure.Client) -> Count:
        store = client.store
        assert isinstance(store, ConsulStore)
        return Count(client, self.of.setdefault(id(store.http), []))


@dataclass
class Count:
    """What one client sent (:class:`Everything`)."""

    client: tenure.Client
    sent: list[tuple[float, str]]

    def __call__(self, start: float, end: float) -> list[str]:
        """The kinds sent within [start, end]."""
        return [kind for t, kind in self.sent if start <= t <= end]


def _settled(client: tenure.Client) -> float:
    """Once the new leader's guard waits (its blocking query sent), and a while more
    in which nothing else may be sent: what the count covers."""
    store = client.store
    assert isinstance(store, ConsulStore)
    deadline = time.monotonic() + 10
    while store.watcher.waiting_from is None:
        assert time.monotonic() < deadline, "the new leader's guard never waited"
        time.sleep(0.01)
    time.sleep(0.3)  # a quiet spell: requests that should not come would come in it
    return time.monotonic()


def test_a_handover_sends_two_requests_in_all_and_a_campaign_three(
    consul_cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counting every thread of both clients (renewals aside): the leader's withdraw
    transaction; the successor's lock transaction (its wait's blocking query was sent
    before) and its guard's blocking query on the leader key it won, armed at the
    lock's index -- no immediate re-query, no check transaction. An uncontended
    campaign: the enqueue transaction (its queue read finds the entry first), the lock
    transaction, the guard's query. (The code before this count sent two requests more
    after each win: a blocking query from a stale index that returned at once, and a
    check transaction.)"""
    everything = Everything(monkeypatch)

    def check(leader: Count, successor: Count, done: Handover) -> None:
        end = _settled(successor.client)
        by_leader, by_successor = leader(done.start, end), successor(done.start, end)
        detail = f"leader sent {by_leader}, successor {by_successor}, steps {done.steps}"
        assert by_leader == ["txn"], detail
        assert by_successor == ["txn", "guard"], detail

    handovers(consul_cluster.url, TTL, f"trips/{time.monotonic_ns()}", everything.counter,
              check, rounds=2)
    with tenure.connect(consul_cluster.url, ttl=TTL) as client:
        count = everything.counter(client)
        name = f"trips/{time.monotonic_ns()}"
        client.election(name).campaign(timeout=10).resign()  # opens the session
        start = time.monotonic()
        lead = client.election(name).campaign(timeout=10)
        sent = count(start, _settled(client))
        assert sent == ["txn", "txn", "guard"], sent
        lead.resign()



def test_a_waiter_is_placed_by_its_enqueue_alone(consul_cluster: Cluster) -> None:
    """The enqueue transaction's own queue read places a waiter: its first step waits
    on the entry just ahead (from that entry's index) and reads nothing (the code
    before sent a ``GET`` of the queue in that step)."""
    url, _ = parse_backend_url(consul_cluster.url)
    name = f"trips/{time.monotonic_ns()}"
    with two_stores(url) as (leader, waiter):
        first = leader.enqueue(name, "a", b"")
        assert isinstance(leader.try_lead(first), Won)
        sent = counted_calls(waiter)
        ticket = waiter.enqueue(name, "b", b"")
        step = waiter.try_lead(ticket)
        assert isinstance(step, Wait) and sent == ["txn"], sent
        assert not step.signal.wait(0.3), "woken while the leader holds"
        leader.withdraw(first)
        assert step.signal.wait(10)
        step.signal.close()
        assert isinstance(waiter.try_lead(ticket), Won) and sent == ["txn", "txn"], sent
        waiter.withdraw(ticket)


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Every descriptor below 1100 taken, so the clients' sockets land above FD_SETSIZE
    (1024), where select() refuses them."""
    with open("/dev/null", "rb") as null:
        fillers = [os.dup(null.fileno())]
        while fillers[-1] < 1100:
            fillers.append(os.dup(null.fileno()))
    try:
        yield
    finally:
        for fd in fillers:
            os.close(fd)


def test_sockets_above_descriptor_1024_keep_one_request_each_side_and_their_connections(
    consul_cluster: Cluster, high_descriptors: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With select(), a kept-alive connection above 1024 looked dropped (ValueError).
    opened: list[int] = []
    original = Line._open

    def counted(self: Line, timeout: float) -> None:
        original(self, timeout)
        assert self._sock is not None
        opened.append(self._sock.fileno())

    monkeypatch.setattr(Line, "_open", counted)
    main = threading.current_thread()

    def check(leader: Requests, successor: Requests, done: Handover) -> None:
        detail = (f"leader sent {leader.by(main, done.start, done.resigned)}, successor "
                  f"{successor.by(done.thread, done.start, done.end)}, steps {done.steps}")
        assert leader.by(main, done.start, done.resigned) == ["txn"], detail
        assert done.steps == ["Won"], detail
        assert successor.by(done.thread, done.start, done.end) == ["txn"], detail

    handovers(consul_cluster.url, TTL, f"trips/highfd/{time.monotonic_ns()}", Requests, check)
    assert opened and max(opened) >= 1024
    # Each client opens its lines once (7 in all here); with select() a kept-alive line
    # looked dropped before each request and was opened again (17).
    assert len(opened) <= 10, f"{len(opened)} connections opened: kept ones are not reused"
