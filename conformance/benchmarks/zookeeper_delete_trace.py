"""What the leader's own-node watch costs a ZooKeeper handover: its ``delete``, traced.

A tenure leader keeps a data watch on its own node (its deletion by anyone else is a
loss: :mod:`tenure.adapters.zookeeper_watches`); kazoo's ``Election`` holder keeps
none. A ``delete`` with that watch still set fires two watches on the server -- its own
and its successor's on the predecessor -- where kazoo's fires one. This
measures, on one ZooKeeper server (a lab server it starts, or ``--hosts``), with two
kazoo clients (a leader and a waiter session), node by node:

* ``delete``'s round trip at the leader (``time.perf_counter_ns`` around the call);
* the delete sent -> the waiter's watch callback running (its wake);

in three variants, ``n`` nodes of each, interleaved in a shuffled order: no watch of the
leader's own session on the node; that watch kept; that watch taken off by a
``removeWatches`` pipelined just ahead of the ``delete`` (:mod:`.zookeeper_remove_watches`;
both answers waited for, one round trip), the alternative to keeping it that tenure's
resign does not take: measured slower than the watch it saves.

What this is not: a whole handover (``handover_trace``), nor a server's own time.

    python -m tenure.conformance.benchmarks.zookeeper_delete_trace [-n 300] [--hosts h:p]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.protocol.states import WatchedEvent

from tenure.conformance.benchmarks import zookeeper_read_trace as read_trace
from tenure.conformance.benchmarks import zookeeper_remove_watches as remove_watches

PARENT = "/tenure-trace/deletes"
NONE = "no watch of the leader's (kazoo Election)"
OWN = "the leader watches its own node (tenure)"
REMOVED = "its own watch removed in the delete's round trip"
VARIANTS = (NONE, OWN, REMOVED)


@dataclass
class Row:
    """One variant's medians (microseconds)."""

    name: str
    delete_median: float
    wake_median: float
    deletes: int


def _one(leader: KazooClient, waiter: KazooClient, variant: str) -> tuple[int, int]:
    path = leader.create(f"{PARENT}/n-", b"", ephemeral=True, sequence=True)
    woken = threading.Event()
    at = [0]

    def wake(event: WatchedEvent) -> None:
        at[0] = time.perf_counter_ns()
        woken.set()

    waiter.exists(path, watch=wake)
    if variant != NONE:
        leader.exists(path, watch=lambda event: None)
    sent = time.perf_counter_ns()
    removed = remove_watches.send(leader, path) if variant == REMOVED else None
    leader.delete(path)
    if removed is not None:
        removed.get(timeout=10)
        remove_watches.forget_callbacks(leader, path)
    answered = time.perf_counter_ns()
    if not woken.wait(10):
        raise RuntimeError(f"the waiter's watch on {path} did not fire within 10 s")
    return answered - sent, at[0] - sent


def trace(leader: KazooClient, waiter: KazooClient, n: int = 300,
          warmup: int = 30) -> list[Row]:
    """``n`` deletes of each variant after ``warmup`` each, interleaved, shuffled; rows
    in :data:`VARIANTS` order."""
    leader.ensure_path(PARENT)
    order = [variant for variant in VARIANTS for _ in range(n + warmup)]
    random.Random(1).shuffle(order)
    found: dict[str, list[tuple[int, int]]] = {variant: [] for variant in VARIANTS}
    seen = dict.fromkeys(VARIANTS, 0)
    for variant in order:
        sample = _one(leader, waiter, variant)
        seen[variant] += 1
        if seen[variant] > warmup:
            found[variant].append(sample)
    return [Row(variant, statistics.median(d for d, _ in found[variant]) / 1000,
                statistics.median(w for _, w in found[variant]) / 1000, len(found[variant]))
            for variant in VARIANTS]


def table(rows: list[Row]) -> str:
    """A markdown table of the variants."""
    lines = ["| leader's delete | delete round trip median us | delete sent -> waiter "
             "woken median us |", "|---|---:|---:|"]
    lines += [f"| {r.name} | {r.delete_median:.0f} | {r.wake_median:.0f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="deletes per variant")
    parser.add_argument("--hosts", help="a ZooKeeper server host:port (default: a lab one)")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error(f"-n {args.n}: give at least 10 deletes per variant")
    with read_trace.sessions(args.hosts, 2) as (hosts, (leader, waiter)):
        load = os.getloadavg()[0]
        rows = trace(leader, waiter, n=args.n)
        print(f"ZooKeeper {hosts}, {args.n} deletes per variant, load {load:.2f} -> "
              f"{os.getloadavg()[0]:.2f}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
