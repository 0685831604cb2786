"""Scale: what keeping many elections, and many waiters, costs the store and the client.

(a) **Elections per client**: one client process holds 1, 100, ... elections (campaigned
before the window, then one TTL to settle); over a window of several TTLs we read the
store's own request counter (:mod:`.storestats`) and the client's CPU time and renewal
count. Target: flat in the number of elections (one session, renewed once per TTL/3,
whatever it holds).
(b) **Waiters per election**: N+1 clients (own sessions; threads in a few worker
processes, 100 per process -- 50 on Consul -- each process connecting from its own
loopback address, as separate hosts would) queue in one election; the leader resigns and the next
leads, a few times; per change we report the clients' notification counters (etcd,
ZooKeeper) and the store requests beyond the idle rate (renewals, polls) -- the lower
of the rates measured in a window just before and just after the changes, since
hundreds of waiters may still be settling in the first.
Target: flat in N (each waiter watches only its predecessor, no herd).

What these are not: throughput limits, or the cost of the campaigns themselves
(campaigning N elections is setup, outside the window). Store-side counts include the
store's answers to our counter reads (one per read on ZooKeeper; none on Redis/etcd).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from tenure.conformance.benchmarks import storestats
from tenure.conformance.benchmarks.workers import Worker

#: Waiters run with a longer TTL so that renewals of N sessions do not drown the few
#: requests of a leader change (ZooKeeper's lab grants at most 4 s).
WAITER_TTL = {"zookeeper": 4.0}
DEFAULT_WAITER_TTL = 10.0

#: Waiters per worker process (the first process also holds the leader). kazoo sessions
#: miss their pings when a few hundred share one process on 2 cores; a waiting Consul
#: client keeps up to 3 HTTP connections (renewals, blocking query, ordinary requests)
#: and Consul allows 200 per client address (limits.http_max_conns_per_client), so 50
#: per process, each process from its own loopback address, keeps within that limit.
WAITERS_PER_PROCESS: dict[str, int] = {"consul": 50}
DEFAULT_WAITERS_PER_PROCESS = 100

#: Setup allowances (seconds): past them a point is reported failed, not waited for.
SETUP_BASE = 30.0
SETUP_PER_CLIENT = 0.12
SETUP_PER_ELECTION = 0.03


@dataclass
class ScaleRow:
    """One point of a scale curve."""

    store: str
    kind: str  # "elections" (a) or "waiters" (b)
    size: int
    status: str = "ok"
    reason: str = ""
    counter: str = ""
    requests_per_s: float | None = None
    cpu_per_s: float | None = None
    renewals_per_s: float | None = None
    requests_per_change: float | None = None
    notifications_per_change: float | None = None
    setup_s: float | None = None
    note: str = ""

    @property
    def per_unit(self) -> float | None:
        """The figure that must stay flat in :attr:`size`."""
        if self.kind == "elections":
            return self.requests_per_s if self.requests_per_s is not None \
                else self.renewals_per_s
        return self.notifications_per_change if self.notifications_per_change is not None \
            else self.requests_per_change

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return asdict(self)


def _command(mode: str, url: str, ttl: float, size: int, extra: list[str]) -> list[str]:
    if "--prefix" not in extra:
        extra = ["--prefix", f"bench/scale/{uuid.uuid4().hex[:8]}", *extra]
    return [sys.executable, "-m", "tenure.conformance.benchmarks.scale_worker", mode,
            "--url", url, "--ttl", repr(ttl), "--size", str(size), *extra]


def elections_point(backend: str, url: str, hosts: str, ttl: float, size: int,
                    window: float) -> ScaleRow:
    """(a) one client holding ``size`` elections, watched for ``window`` seconds."""
    row = ScaleRow(backend, "elections", size, counter=storestats.describe(backend))
    read = storestats.reader(backend, hosts)
    worker = Worker(_command("hold", url, ttl, size, []), f"hold-{size}")
    try:
        row.setup_s = worker.next("holding", timeout=SETUP_BASE + SETUP_PER_ELECTION * size)["took"]
        worker.send("start")
        worker.next("started")
        before, t0 = (read() if read else 0.0), time.monotonic()
        time.sleep(window)  # the observation window itself
        after, t1 = (read() if read else 0.0), time.monotonic()
        worker.send("stop")
        result = worker.next("result")
    finally:
        worker.close()
    if read is not None:
        row.requests_per_s = (after - before - _self_count(backend)) / (t1 - t0)
    row.cpu_per_s = result["cpu"] / result["wall"]
    row.renewals_per_s = result["renewals"] / result["wall"]
    return row


def waiters_point(backend: str, url: str, hosts: str, size: int, changes: int,
                  window: float) -> ScaleRow:
    """(b) ``size`` waiters on one election, ``changes`` leader changes.

    The waiters run in several worker processes (:data:`WAITERS_PER_PROCESS`), each
    connecting from its own loopback address when the store is on loopback (127.0.0.2,
    127.0.0.3, ...), so per-address limits of the store apply to each process as they
    would to separate hosts. The first process holds the leader and queues first, so
    with arrival order the next leaders are its waiters; the others only wait."""
    ttl = WAITER_TTL.get(backend, DEFAULT_WAITER_TTL)
    per_process = WAITERS_PER_PROCESS.get(backend, DEFAULT_WAITERS_PER_PROCESS)
    first = min(size, per_process - 1)
    changes = min(changes, first)  # each change uses up one waiter of the first process
    chunks = [first] + [min(per_process, size - done)
                        for done in range(first, size, per_process)]
    row = ScaleRow(backend, "waiters", size, counter=storestats.describe(backend))
    if len(chunks) > 1:
        row.note = f"waiters in {len(chunks)} processes" + (
            ", each from its own loopback address" if _loopback(hosts) else "")
    read = storestats.reader(backend, hosts)
    prefix = f"bench/scale/{uuid.uuid4().hex[:8]}"
    workers: list[Worker] = []
    try:
        started = time.monotonic()
        for index, count in enumerate(chunks):
            extra = ["--changes", str(changes), "--prefix", prefix]
            extra += ["--lead"] if index == 0 else []
            if _loopback(hosts):
                extra += ["--source", f"127.0.0.{2 + index}"]
            workers.append(Worker(_command("waiters", url, ttl, count, extra),
                                  f"waiters-{size}#{index}"))
            if index == 0:  # the leader and the first waiters queue before the others
                workers[0].next("queued", timeout=SETUP_BASE + SETUP_PER_CLIENT * (count + 1))
        for worker in workers[1:]:
            worker.next("queued", timeout=SETUP_BASE + SETUP_PER_CLIENT * size)
        row.setup_s = time.monotonic() - started
        if read is not None:
            idle0, t0 = read(), time.monotonic()
            time.sleep(window)  # idle window: the renewal rate of N+1 sessions
            idle1, t1 = read(), time.monotonic()
            idle_rate = (idle1 - idle0 - _self_count(backend)) / (t1 - t0)
        for worker in workers[1:]:
            worker.send("start")
        for worker in workers[1:]:
            worker.next("started")
        if read is not None:
            before, t2 = read(), time.monotonic()
        workers[0].send("start")
        workers[0].next("started")
        workers[0].next("changed", timeout=300)
        if read is not None:
            after, t3 = read(), time.monotonic()
            time.sleep(window)  # idle again: the rate once every waiter has settled
            idle2, t4 = read(), time.monotonic()
            idle_rate = min(idle_rate, (idle2 - after - _self_count(backend)) / (t4 - t3))
            busy = after - before - _self_count(backend)
            row.requests_per_change = (busy - idle_rate * (t3 - t2)) / changes
        for worker in workers:
            worker.send("count")
        reports = [worker.next("notified", timeout=300) for worker in workers]
        counted = [r["notifications"] for r in reports]
        if all(c is not None for c in counted):
            row.notifications_per_change = sum(counted) / changes
        calls = [r["client_calls"] for r in reports if r.get("client_calls")]
        if calls:  # Consul: counted in the clients, no store-side counter
            row.counter = "Consul HTTP requests counted in the clients (ConsulHTTP.sent, " \
                          "session renewals left out); blocking queries returning a " \
                          "change as notifications"
            row.requests_per_change = sum(c["requests"] - c["renewals"] for c in calls) \
                / changes
            row.notifications_per_change = sum(c["returns"] for c in calls) / changes
        for worker in workers:
            worker.send("stop")
    finally:
        for worker in workers:
            worker.close()
    return row


def _loopback(hosts: str) -> bool:
    """Every host of the store is a loopback address (127.0.0.0/8)."""
    return bool(hosts) and all(h.strip().startswith("127.") for h in hosts.split(","))


def _self_count(backend: str) -> float:
    """Requests our own counter read adds (ZooKeeper counts the ``mntr`` packet)."""
    return 1.0 if backend == "zookeeper" else 0.0


def growth(points: list[tuple[int, float]]) -> float:
    """The steepest exponent k of cost ~ size^k from the smallest size to any larger one
    (0: flat, 1: linear); a single noisy low point at a large size does not hide a
    steep rise before it."""
    n0, v0 = points[0]
    steepest = 0.0
    for n1, v1 in points[1:]:
        if n1 == n0 or v1 <= 0:
            continue
        if v0 <= 0:
            return float("inf")
        steepest = max(steepest, math.log(v1 / v0) / math.log(n1 / n0))
    return steepest


def verdicts(rows: list[ScaleRow]) -> list[str]:
    """Flatness of each curve: the growth exponent between its end points (flat: a
    tenfold size costs at most ~25 % more, k <= 0.1)."""
    out = []
    for store, kind in sorted({(r.store, r.kind) for r in rows}):
        points = sorted((r.size, r.per_unit) for r in rows
                        if (r.store, r.kind) == (store, kind) and r.per_unit is not None)
        if len(points) < 2:
            continue
        k = growth(points)
        what = "store requests/s (or renewals/s)" if kind == "elections" else \
            "notifications (or requests) per leader change"
        verdict = "flat" if k <= 0.1 else f"NOT flat: grows ~ {kind}^{k:.2f}"
        sizes = ", ".join(f"{s}: {v:.2f}" for s, v in points)
        out.append(f"- {store}: {what} vs {kind} [{sizes}]: {verdict}")
        cpu = sorted((r.size, r.cpu_per_s * 100) for r in rows
                     if (r.store, r.kind) == (store, kind) and r.cpu_per_s)
        if kind == "elections" and len(cpu) >= 2:
            k = growth(cpu)
            verdict = "flat" if k <= 0.1 else f"NOT flat: grows ~ elections^{k:.2f}"
            sizes = ", ".join(f"{s}: {v:.2f} %" for s, v in cpu)
            out.append(f"- {store}: client CPU vs elections [{sizes}]: {verdict}")
    return out
