"""The in-process side of the scale measurements (one OS process, many elections or
many clients), driven over stdin like :mod:`.worker`.

    python -m tenure.conformance.benchmarks.scale_worker hold --url URL --ttl S --size N
    python -m tenure.conformance.benchmarks.scale_worker waiters --url URL --ttl S --size N

``hold``: ONE client campaigns in N elections (8 threads), reports ``holding``; on
``start`` it notes its CPU time and renewal count, on ``stop`` reports their growth
(``process_time`` covers every thread of the process: renewals, watchdog, watches).

``waiters``: N+1 clients (own sessions) campaign in one election; the first leads, the
others queue (``queued`` once every ``enqueue`` has returned). On ``start`` the leader
resigns, the next one leads and resigns at once, ``changes`` times; ``changed`` reports
the wall time; on ``count``, after a read round trip on every client, ``notified``
reports the growth of the clients' notification counters
(``watch_notifications`` on etcd, ``notifications`` on ZooKeeper) where they have them,
and for Consul the client-side count of HTTP requests and blocking-query returns.
"""

from __future__ import annotations

import argparse
import queue
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


def waiters(url: str, ttl: float, size: int, prefix: str, changes: int) -> None:
    clients = [tenure.connect(url, ttl=ttl) for _ in range(size + 1)]
    name = f"{prefix}/one"
    queued = threading.Semaphore(0)
    calls = {"_call": 0, "_block": 0}
    if url.startswith("consul"):
        for client in clients:
            _count_calls(client, calls)
    for client in clients[1:]:
        _signal_after_enqueue(client, queued.release)
    won: queue.Queue[tenure.Leadership] = queue.Queue()
    current = clients[0].election(name).campaign()
    for client in clients[1:]:
        threading.Thread(target=lambda c=client: won.put(c.election(name).campaign()),
                         daemon=True).start()
    for _ in clients[1:]:
        queued.acquire()
    emit("queued")
    _wait("start")
    before = notifications(clients)
    calls_before = dict(calls)
    started = time.monotonic()
    for _ in range(changes):
        current.resign()
        current = won.get(timeout=60)
    took = time.monotonic() - started
    client_calls = None
    if calls["_call"] or calls["_block"]:
        client_calls = {k: calls[k] - calls_before[k] for k in calls}
    emit("changed", wall=took, client_calls=client_calls)
    _wait("count")
    # A read round trip on every session: a notification the changes caused has reached
    # its client before this answer (the waiter may have been woken another way first).
    for client in clients:
        client.election(name).leader()
    after = notifications(clients)
    emit("notified", notifications=None if before is None or after is None else after - before)
    _wait("stop")
    for client in clients:
        client.close()


def _count_calls(client: tenure.Client, counts: dict[str, int]) -> None:
    """Counts the HTTP requests of adapters whose every request goes through ``_call``
    (and blocking queries through ``_block``): Consul's. Measurement only; the adapter
    is not changed. GIL-protected increments are close enough for counts."""
    for name in counts:
        original = getattr(client.store, name, None)
        if original is None:
            continue

        def counted(*args: Any, _original: Any = original, _name: str = name,
                    **kwargs: Any) -> Any:
            counts[_name] += 1
            return _original(*args, **kwargs)

        setattr(client.store, name, counted)


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
    args = parser.parse_args(argv)
    try:
        if args.mode == "hold":
            hold(args.url, args.ttl, args.size, args.prefix)
        else:
            waiters(args.url, args.ttl, args.size, args.prefix, args.changes)
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
