"""Resign handover: from the leader's ``resign()`` returning to the next candidate's
``campaign()`` returning.

Two contender processes of one tool take turns: the leader holds for ``hold`` seconds
(its term; it also gives the waiter time to reach the store before the resign), resigns,
and the waiter's ``elected`` time minus the leader's ``resigned`` time is one sample;
the old leader then campaigns again and waits. Both times are ``CLOCK_MONOTONIC`` of the
same host, taken in the two processes right after the calls return.

What it is: the latency a user of the tool sees between one leader stepping down and
the next one knowing it leads, with the store on loopback. What it is not: a
throughput figure, nor a measure under contention (one waiter), nor across hosts.
For a tool that polls (tooz, redis-py's Lock), the figure includes its poll interval:
that is what its users get.
"""

from __future__ import annotations

import time

from tenure.conformance.benchmarks.workers import Worker, Workers

#: Handovers made before the first sample and not reported: they warm the two
#: processes (imports, first connections, caches) and the store (a fresh ZooKeeper JVM
#: answers its first thousand requests slower while its JIT compiles), so that no tool is
#: charged for running first on a fresh store.
WARMUP = 10


def measure(tool: str, url: str, election: str, ttl: float, changes: int,
            hold: float = 0.05, fixed_order: bool = False,
            warmup: int = WARMUP) -> list[float]:
    """``changes`` handover samples in seconds, after ``warmup`` unreported handovers.

    ``fixed_order``: for tools where a higher-ranked candidate takes over from a lower
    one at once (the Bully reference), always hand over from worker 1 to worker 0:
    after each sample worker 0 resigns, worker 1 campaigns and wins, then worker 0
    queues again."""
    gaps: list[float] = []
    with Workers(tool, url, election, ttl) as workers:
        first, second = workers.spawn(), workers.spawn()
        leader, waiter = (second, first) if fixed_order else (first, second)
        _lead(leader)
        _queue(waiter)
        for round_ in range(warmup + changes):
            time.sleep(hold)  # the leader's term, not a synchronisation
            leader.send("resign")
            resigned = leader.next("resigned")
            elected = waiter.next("elected")
            if round_ >= warmup:
                gaps.append(elected["t"] - resigned["t"])
            if fixed_order:
                waiter.send("resign")
                waiter.next("resigned")
                _lead(leader)
                _queue(waiter)
            else:
                _queue(leader)
                leader, waiter = waiter, leader
    return gaps


def _lead(worker: Worker) -> None:
    worker.send("campaign")
    worker.next("elected")


def _queue(worker: Worker) -> None:
    worker.send("campaign")
    worker.next("campaigning")


def uncontended(tool: str, url: str, election: str, ttl: float, count: int) -> list[float]:
    """Campaign latency with no contention: one process campaigns and resigns ``count``
    times (after a first, unmeasured round that opens the session); a sample is
    ``elected.t - campaigning.t``, the time inside ``campaign()``. What it is not: the
    cost of connecting or opening the session (excluded), nor of resigning."""
    samples: list[float] = []
    with Workers(tool, url, election, ttl) as workers:
        worker = workers.spawn()
        for round_ in range(count + 1):
            worker.send("campaign")
            started = worker.next("campaigning")
            elected = worker.next("elected")
            if round_:
                samples.append(elected["t"] - started["t"])
            worker.send("resign")
            worker.next("resigned")
    return samples
