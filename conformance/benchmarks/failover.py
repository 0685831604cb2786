"""Crash failover: from SIGKILL of the leader process to the next candidate's
``campaign()`` returning, reported next to the TTL in force.

A leader and one waiting candidate (separate processes); the waiter has announced
``campaigning`` and had ``settle`` seconds to reach the store; the benchmark takes
``CLOCK_MONOTONIC`` just before SIGKILL (the whole process group) and subtracts it from
the waiter's ``elected`` time. A new waiter is started for the next kill.

What it is: how long an election is leaderless after a crash, which is dominated by
the store's expiry of the dead session (TTL, on every store) plus how soon the
waiter hears of it. What it is not: failover after a store-node failure (that is the
conformance suite's L3).
"""

from __future__ import annotations

import time

from tenure.conformance.benchmarks.workers import Workers


def measure(tool: str, url: str, election: str, ttl: float, kills: int,
            settle: float = 0.3, expiry_factor: float = 1.0) -> list[float]:
    """``kills`` failover samples in seconds."""
    times: list[float] = []
    bound = ttl * expiry_factor + 30.0
    with Workers(tool, url, election, ttl) as workers:
        leader = workers.spawn()
        leader.send("campaign")
        leader.next("elected", timeout=bound)
        for _ in range(kills):
            waiter = workers.spawn()
            waiter.send("campaign")
            waiter.next("campaigning")
            time.sleep(settle)  # lets the waiter's campaign reach the store
            killed = leader.kill()
            elected = waiter.next("elected", timeout=bound)
            times.append(elected["t"] - killed)
            leader = waiter
    return times
