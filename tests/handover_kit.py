"""What the round-trip counts of a resign handover (tests/*/test_*_handover_trips.py)
share: the record of each ``try_lead`` step of a client's store, and the handover
itself -- the successor campaigns on its own thread, waits (a parked step), the
leader resigns, the successor's campaign returns -- repeated with the roles swapped.

Each test counts its store's requests its own way (ZooKeeper: pipelined requests per
answer awaited; Consul: one request per round trip; Redis: scripts per instance) and
asserts them in ``check``; timings here only delimit the counted windows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tenure
from tenure.store import Wait


class Steps:
    """Every ``try_lead`` outcome of ``client``'s store, with its time; ``parked`` is
    set by each step that waits."""

    def __init__(self, client: tenure.Client) -> None:
        self.steps: list[tuple[float, str]] = []
        self.parked = threading.Event()
        store = client.store
        original = store.try_lead

        def try_lead(ticket: Any) -> Any:
            step = original(ticket)
            self.steps.append((time.monotonic(), type(step).__name__))
            if isinstance(step, Wait):
                self.parked.set()
            return step

        store.try_lead = try_lead  # type: ignore[method-assign]

    def between(self, start: float, end: float) -> list[str]:
        return [s for t, s in self.steps if start <= t <= end]


@dataclass
class Handover:
    """One handover: the new leadership, the successor's campaigning thread and the
    window [start, end] (``resigned``: when the leader's ``resign()`` returned)."""

    leadership: tenure.Leadership
    thread: threading.Thread
    start: float
    resigned: float
    end: float
    steps: list[str]


def hand_over(successor: tenure.Client, steps: Steps, name: str, lead: tenure.Leadership,
              before_resign: Callable[[], None] | None = None) -> Handover:
    """Resigns ``lead`` once ``successor`` campaigns and waits in ``name``."""
    won: list[tenure.Leadership] = []
    ended = threading.Event()
    steps.parked.clear()

    def campaign() -> None:
        won.append(successor.election(name).campaign(timeout=30))
        ended.set()

    thread = threading.Thread(target=campaign)
    thread.start()
    assert steps.parked.wait(10), "the successor never waited"
    if before_resign is not None:
        before_resign()
    start = time.monotonic()
    lead.resign()
    resigned = time.monotonic()
    assert ended.wait(15), "the successor did not win after the resign"
    end = time.monotonic()
    thread.join()
    return Handover(won[0], thread, start, resigned, end, steps.between(start, end))


def handovers(url: str, ttl: float, name: str, count: Callable[[tenure.Client], Any],
              check: Callable[[Any, Any, Handover], None], rounds: int = 3,
              before_resign: Callable[[list[Any]], None] | None = None) -> None:
    """Clients "a" and "b" on ``url`` hand ``name`` over ``rounds`` times, each way in
    turn; ``count(client)`` installs a client's request counter (after its first
    campaign), and ``check(leader's counter, successor's counter, handover)`` judges
    each handover. ``before_resign(counters)`` runs just before each resign."""
    clients = [tenure.connect(url, ttl=ttl, candidate_id=c) for c in ("a", "b")]
    try:
        lead = clients[0].election(name).campaign(timeout=10)
        counters = [count(c) for c in clients]
        steps = [Steps(c) for c in clients]
        leader, successor = 0, 1
        for _ in range(rounds):
            hook = None if before_resign is None else (lambda: before_resign(counters))
            done = hand_over(clients[successor], steps[successor], name, lead, hook)
            check(counters[leader], counters[successor], done)
            lead = done.leadership
            leader, successor = successor, leader
        lead.resign()
    finally:
        for client in clients:
            client.close()
