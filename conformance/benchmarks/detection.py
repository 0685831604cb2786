"""Loss detection: how soon a leader that can no longer keep its lease is told so.

Two faults, each repeated with a fresh leader process:

* **cut**: every byte between the leader and its store is dropped (a blackhole proxy:
  connections stay open, nothing arrives; the client waits for its own timeouts).
  Sample: fault -> the tool's loss report, and for tenure also the lateness of that
  report past the validity deadline the leader held (``lost.t - deadline``; tenure
  promises it fires within milliseconds of the deadline).
* **pause**: the leader process is SIGSTOPped for ``expiry_factor x TTL + 0.5 s`` (its
  lease expires meanwhile), then resumed. Sample: resume -> the tool's loss report.

What it is: the window during which a tool's user believes it still leads after it
no longer does (or the bound on it). What it is not: when the store expires the lease
(that is the failover figure). A tool that never reports within ``limit`` gets no
sample and a "never" count: the benchmark notes it instead of waiting for ever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenure.conformance.benchmarks.workers import Worker, WorkerFailed, Workers


@dataclass
class Detection:
    """Samples of one fault kind; ``late`` only where the tool reports a deadline."""

    after_fault: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    never: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return {"after_fault": self.after_fault, "late": self.late, "never": self.never}


class CuttablePath(Protocol):
    """What :func:`cut` needs from a proxied path."""

    def cut(self, blackhole: bool = False) -> None: ...

    def heal(self) -> None: ...


def cut(tool: str, url: str, path: CuttablePath, election: str, ttl: float, repeats: int,
        limit: float) -> Detection:
    """``repeats`` blackhole cuts of the leader's path to its store (``url`` goes
    through ``path``). Each repeat uses a fresh leader process (a peer tool's state
    after a loss is not always fit for another campaign)."""
    found = Detection()
    for i in range(repeats):
        with Workers(tool, url, f"{election}/{i}", ttl) as workers:
            leader = workers.spawn()
            _elect(leader, ttl)
            path.cut(blackhole=True)
            t_fault = time.monotonic()
            try:
                lost = leader.next("lost", timeout=limit)
            except WorkerFailed:
                found.never += 1
                path.heal()
                break  # the tool is stuck or never reports: no further samples
            found.after_fault.append(lost["t"] - t_fault)
            if lost.get("deadline") is not None:
                found.late.append(lost["t"] - lost["deadline"])
            path.heal()
    return found


def pause(tool: str, url: str, election: str, ttl: float, expiry_factor: float,
          repeats: int, limit: float) -> Detection:
    """``repeats`` SIGSTOPs of the leader for longer than its lease."""
    found = Detection()
    for i in range(repeats):
        with Workers(tool, url, f"{election}/{i}", ttl) as workers:
            leader = workers.spawn()
            _elect(leader, ttl)
            leader.pause()
            time.sleep(ttl * expiry_factor + 0.5)  # the pause itself is the fault
            t_resume = leader.resume()
            try:
                lost = leader.next("lost", timeout=limit)
            except WorkerFailed:
                found.never += 1
                break
            found.after_fault.append(lost["t"] - t_resume)
            if lost.get("deadline") is not None:
                found.late.append(lost["t"] - lost["deadline"])
    return found


def _elect(worker: Worker, ttl: float) -> None:
    worker.send("campaign")
    worker.next("elected", timeout=ttl * 4 + 30)
