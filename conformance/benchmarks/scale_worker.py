"""The in-process side of the scale measurements (one OS process, many elections or
many clients), driven over stdin like :mod:`.worker`.

    python -m tenure.conformance.benchmarks.scale_worker hold --url URL --ttl S --size N
    python -m tenure.conformance.benchmarks.scale_worker waiters --url URL --ttl S --size N

``hold``: ONE client campaigns in N elections (8 threads), reports ``holding``; on
``start`` it notes its CPU time and renewal count, on ``stop`` reports their growth
(``process_time`` covers every thread of the process: renewals, watchdog, watches).

``waiters``: N clients (own sessions) queue in one election (``queued`` once every
``enqueue`` has returned); with ``--lead`` one more client leads first. On ``start`` each
process notes its counters (``started``); the leading one then resigns, the next one
leads and resigns at once, ``changes`` times (``changed`` reports the wall time). On
``count``, after a read round trip on every client, ``notified`` reports the growth of
the clients' notification counters (``watch_notifications`` on etcd, ``notifications``
on ZooKeeper) where they have them, and for Consul the client-side count of HTTP
requests and blocking-query returns. The benchmark runs several such processes (see
:func:`.scale.waiters_point`), each from its own loopback address (``--source``).
"""

from __future__ import annotations

import argparse
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tenure
from tenure.conformance.benchmarks.worker import emit

COUNTERS = ("watch_notifications", "notifications")


def notifications(clients: list[tenure.Client]) -> float | None:
    """The sum of the clients' notification counters, or None if they keep none."""
    total, found = 0.0, False
    for client in clients:
        for name in COUNTERS:
            value = getattr(client.store, name, None)
            if isinstance(value, int | float):
                total += value
                found = True
    return total if found else None


def _wait(command: str) -> None:
    for line in sys.stdin:
        if line.strip() == command:
            return
    raise SystemExit(0)


def hold(url: str, ttl: float, size: int, prefix: str) -> None:
    client = tenure.connect(url, ttl=ttl)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.election(f"{prefix}/{i}").campaign(), range(size)))
    took = time.monotonic() - started
    time.sleep(ttl)  # lets the campaigns' background work end before the window opens
    emit("holding", took=took)
    _wait("start")
    cpu, renewals, wall = time.process_time(), client.keeper.renewals, time.monotonic()
    emit("started")
    _wait("stop")
    emit("result", cpu=time.process_time() - cpu, renewals=client.keeper.renewals - renewals,
         wall=time.monotonic() - wall)
    client.close()


def waiters(url: str, ttl: float, size: int, prefix: str, changes: int, lead: bool) -> None:
    """``size`` waiting clients (and, with ``lead``, one more that leads first and runs
    the leader changes); see the module docstring."""
    clients = [tenure.connect(url, ttl=ttl) for _ in range(size + (1 if lead else 0))]
    name = f"{prefix}/one"
    queued = threading.Semaphore(0)
    consul = url.startswith("consul")
    if consul:
        _count_blocking_returns()
    waiting = clients[1:] if lead else clients
    for client in waiting:
        _signal_after_enqueue(client, queued.release)
    won: queue.Queue[tenure.Leadership] = queue.Queue()
    current = clients[0].election(name).campaign() if lead else None
    for client in waiting:
        threading.Thread(target=lambda c=client: won.put(c.election(name).campaign()),
                         daemon=True).start()
    for _ in waiting:
        queued.acquire()
    emit("queued")
    _wait("start")
    before = notifications(clients)
    calls_before = _consul_counts(clients) if consul else None
    emit("started")
    if current is not None:
        started = time.monotonic()
        for _ in range(changes):
            current.resign()
            current = won.get(timeout=60)
        emit("changed", wall=time.monotonic() - started)
    _wait("count")
    client_calls = None
    if calls_before is not None:
        calls_after = _consul_counts(clients)
        client_calls = {k: calls_after[k] - calls_before[k] for k in calls_after}
    # A read round trip on every session: a notification the changes caused has reached
    # its client before this answer (the waiter may have been woken another way first).
    for client in clients:
        client.election(name).leader()
    after = notifications(clients)
    emit("notified", notifications=None if before is None or after is None else after - before,
         client_calls=client_calls)
    _wait("stop")
    for client in clients:
        client.close()


def bind_source(address: str) -> None:
    """Makes every IPv4 connection of this process to a loopback address leave from
    ``address`` (another loopback address, e.g. 127.0.0.2): stores that limit
    connections per client address (Consul's ``http_max_conns_per_client``, ZooKeeper's
    ``maxClientCnxns``) then count this process apart from the others. Measurement only:
    applied to the socket class, so every library's connections (kazoo, requests,
    http.client) are covered without changing them. On Linux all of 127.0.0.0/8 is
    local (lo), so any such address can be bound without configuring anything."""
    original = socket.socket.connect

    def connect(self: socket.socket, target: Any) -> None:
        if (self.family == socket.AF_INET and isinstance(target, tuple)
                and str(target[0]).startswith("127.") and self.getsockname()[1] == 0):
            self.bind((address, 0))
        original(self, target)

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]


BLOCKING_RETURNS = [0]
"""Consul blocking queries of this process that returned a moved index."""


def _count_blocking_returns() -> None:
    """Counts, in :data:`BLOCKING_RETURNS`, the Consul blocking queries that return a
    moved index (a notification; a query that only timed out is not one). Measurement
    only: the adapter's class is wrapped in this benchmark process, not changed."""
    from tenure.adapters import consul_http

    original = consul_http.BlockingQuery.get

    def get(self: consul_http.BlockingQuery, path: str, params: dict[str, str],
            index: int) -> int | None:
        found = original(self, path, params, index)
        if found is not None and found > index:
            BLOCKING_RETURNS[0] += 1  # GIL-protected; close enough for counts
        return found

    consul_http.BlockingQuery.get = get  # type: ignore[method-assign]

    def returned(self: consul_http.KeyWatch, found: int) -> None:  # the fast lane's queries
        if found > self.index:
            BLOCKING_RETURNS[0] += 1

    consul_http.KeyWatch.returned = returned  # type: ignore[method-assign]


def _consul_counts(clients: list[tenure.Client]) -> dict[str, int]:
    """Consul HTTP requests the clients sent (``ConsulHTTP.sent``: blocking queries
    included), their session renewals (one request each) and blocking queries that
    returned a change, so far."""
    sent = sum(int(getattr(getattr(c.store, "http", None), "sent", 0)) for c in clients)
    renewals = sum(c.keeper.renewals for c in clients)
    return {"requests": sent, "renewals": renewals, "returns": BLOCKING_RETURNS[0]}


def _signal_after_enqueue(client: tenure.Client, signal: Callable[[], Any]) -> None:
    original = client.store.enqueue

    def enqueue(*args: Any, **kwargs: Any) -> Any:
        ticket = original(*args, **kwargs)
        signal()
        return ticket

    client.store.enqueue = enqueue  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenure.conformance.benchmarks.scale_worker")
    parser.add_argument("mode", choices=("hold", "waiters"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--lead", action="store_true",
                        help="waiters: one more client leads first and runs the changes")
    parser.add_argument("--source", help="loopback address to connect from (127.0.0.N)")
    args = parser.parse_args(argv)
    try:
        if args.source:
            bind_source(args.source)
        if args.mode == "hold":
            hold(args.url, args.ttl, args.size, args.prefix)
        else:
            waiters(args.url, args.ttl, args.size, args.prefix, args.changes, args.lead)
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
