"""Where a ZooKeeper waiter's step goes: the one read of a woken waiter, traced per call.

In a resign handover both tenure and kazoo's ``Election`` make ONE request after the
waiter's wake (tests/zookeeper/test_zookeeper_handover_trips.py): kazoo a
``getChildren`` of the election, tenure a ``multiRead`` of that listing and the handoff
marker's ``getData`` (:mod:`tenure.adapters.zookeeper_multiread`). This measures, on one
ZooKeeper server (a lab server it starts, or ``--hosts``), with one kazoo client:

* ``getChildren``: kazoo's own ``get_children`` (the peer's waiter read);
* ``multiRead getChildren``: the listing alone in tenure's ``multiRead`` record (what
  the framing and tenure's hand-written encoder/decoder cost);
* ``multiRead getChildren + getData``: tenure's waiter read as sent on a normal
  handover (no handoff under way: the marker node is absent, answered NoNode inside
  the multiRead);
* the same with a marker present (a handoff under way; 200 bytes of JSON).

For each: the round trip (``time.perf_counter_ns`` around the call, reply parsed) and
this process's CPU per call (``time.process_time_ns``: the caller's thread and kazoo's
connection thread), median and 90th percentile, the variants interleaved call by call
in a shuffled order (the shared machine's speed changes by the second). The election
node holds 3 children, as in ``tenure bench``'s handover (3 candidate processes).

What this is not: the whole handover (the deletion, the watch event, the waiter's Python
around the read: ``tenure bench --only handover``), a follower's answer, or a server's
own time (ZooKeeper reports no per-request figure). The machine is shared: compare rows
of one run, not runs.

    python -m tenure.conformance.benchmarks.zookeeper_read_trace [-n 2000] [--hosts h:p]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from tenure.adapters import zookeeper_multiread as multiread

PARENT = "/tenure-trace/elections/handover"
MARKER = "/tenure-trace/data/marker"
ABSENT = "/tenure-trace/data/absent"
MARKER_VALUE = b'{"id":"' + b"f" * 32 + b'","to":"candidate-2","by":"candidate-1",' + \
    b'"token":41,"timeout":10.0,"keep":true,"done":false,"taken_by":"","taken_token":0,' + \
    b'"request":"","refused":""}'

GET_CHILDREN = "getChildren (kazoo Election)"
MULTI_LISTING = "multiRead getChildren"
MULTI_NORMAL = "multiRead getChildren + getData, no marker (tenure)"
MULTI_MARKER = "multiRead getChildren + getData, marker present"


@dataclass
class Row:
    """One variant's figures (microseconds)."""

    name: str
    rtt_median: float
    rtt_p90: float
    cpu_median: float
    calls: int


def prepare(zk: KazooClient) -> None:
    """The election with 3 children and the marker node (the absent one stays absent)."""
    zk.ensure_path(PARENT)
    zk.ensure_path(MARKER.rsplit("/", 1)[0])
    for child in zk.get_children(PARENT):
        zk.delete(f"{PARENT}/{child}")
    for _ in range(3):
        zk.create(f"{PARENT}/n_", b"", ephemeral=True, sequence=True)
    if zk.exists(MARKER):
        zk.set(MARKER, MARKER_VALUE)
    else:
        zk.create(MARKER, MARKER_VALUE)
    if zk.exists(ABSENT):
        zk.delete(ABSENT)


def calls(zk: KazooClient) -> dict[str, Callable[[], object]]:
    """Name -> one call, returning its parsed answer."""
    def multi(*ops: tuple[int, str]) -> Callable[[], object]:
        return lambda: multiread.send(zk, list(ops)).get(timeout=10)

    return {
        GET_CHILDREN: lambda: zk.get_children(PARENT),
        MULTI_LISTING: multi((multiread.GET_CHILDREN, PARENT)),
        MULTI_NORMAL: multi((multiread.GET_CHILDREN, PARENT), (multiread.GET_DATA, ABSENT)),
        MULTI_MARKER: multi((multiread.GET_CHILDREN, PARENT), (multiread.GET_DATA, MARKER)),
    }


class TraceError(RuntimeError):
    """A variant did not read what it claims (the trace would time something else)."""


def check(zk: KazooClient) -> None:
    """Every variant reads what it claims; raises :class:`TraceError` naming it."""
    variants = calls(zk)
    listing = sorted(zk.get_children(PARENT))
    answers: dict[str, Any] = {name: call() for name, call in variants.items()}
    expected: dict[str, Callable[[Any], bool]] = {
        MULTI_LISTING: lambda a: len(a) == 1 and sorted(a[0]) == listing,
        MULTI_NORMAL: lambda a: sorted(a[0]) == listing and isinstance(a[1], NoNodeError),
        MULTI_MARKER: lambda a: (sorted(a[0]) == listing and isinstance(a[1], tuple)
                                 and a[1][0] == MARKER_VALUE),
    }
    if len(listing) != 3 or sorted(answers[GET_CHILDREN]) != listing:
        raise TraceError(f"{GET_CHILDREN}: expected 3 children, read {listing!r}")
    for name, holds in expected.items():
        if not holds(answers[name]):
            raise TraceError(f"{name}: read {answers[name]!r}")


def trace(zk: KazooClient, n: int = 2000, warmup: int = 200) -> list[Row]:
    """``n`` timed calls of each variant, interleaved in a shuffled order."""
    prepare(zk)
    check(zk)
    variants = calls(zk)
    order = [name for name in variants for _ in range(n + warmup)]
    random.Random(1).shuffle(order)
    rtt: dict[str, list[int]] = {name: [] for name in variants}
    cpu: dict[str, list[int]] = {name: [] for name in variants}
    seen = dict.fromkeys(variants, 0)
    for name in order:
        call = variants[name]
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        call()
        t1, c1 = time.perf_counter_ns(), time.process_time_ns()
        seen[name] += 1
        if seen[name] > warmup:
            rtt[name].append(t1 - t0)
            cpu[name].append(c1 - c0)
    rows = []
    for name in variants:
        times = sorted(rtt[name])
        rows.append(Row(name, statistics.median(times) / 1000,
                        times[int(len(times) * 0.9)] / 1000,
                        statistics.median(cpu[name]) / 1000, len(times)))
    return rows


def table(rows: list[Row]) -> str:
    """A markdown table, each row's round trip also as a ratio over kazoo's read."""
    base = next(r.rtt_median for r in rows if r.name == GET_CHILDREN)
    lines = ["| read | round trip median us | p90 us | CPU median us | / getChildren |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.rtt_median:.0f} | {r.rtt_p90:.0f} | {r.cpu_median:.0f} | "
              f"{r.rtt_median / base:.2f} |" for r in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def sessions(hosts: str | None, count: int) -> Iterator[tuple[str, list[KazooClient]]]:
    """``count`` started kazoo sessions to ``hosts`` (None: a 1-node lab server, started
    here and stopped on exit) and the ``host:port`` they use; all closed on exit."""
    from tenure.conformance.lab.zookeeper import ZooKeeperCluster

    cluster = None
    if hosts is None:
        cluster = ZooKeeperCluster(nodes=1)
        cluster.start()
        hosts = cluster.nodes[0].client_address
    clients = [KazooClient(hosts=hosts, timeout=10) for _ in range(count)]
    try:
        for client in clients:
            client.start(timeout=30)
        yield hosts, clients
    finally:
        for client in clients:
            client.stop()
            client.close()
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="timed calls per variant")
    parser.add_argument("--hosts", help="a ZooKeeper server host:port (default: a lab one)")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error(f"-n {args.n}: give at least 10 calls per variant")
    with sessions(args.hosts, 1) as (hosts, (zk,)):
        load = os.getloadavg()[0]
        rows = trace(zk, n=args.n)
        print(f"ZooKeeper {hosts}, {args.n} calls per variant, load {load:.2f} -> "
              f"{os.getloadavg()[0]:.2f}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
