"""The Consul Watcher's START_PAUSE on back-to-back campaigns (issue 14: the gateway's
campaign overhead on Consul).

A won lock adds the client's guard to its :class:`Watcher`; ``prewake`` (sent with the
lock request) wakes the idle thread early so that the guard, added during the thread's
START_PAUSE, wakes nothing on the winner's way back. A campaign that came less than
START_PAUSE after the previous one found the thread still in that earlier pause:
``prewake`` did nothing, and if the pause ended before the guard came the thread went
idle, to be woken by the guard's ``notify`` -- on the winner's path, taking the GIL while
it returns (seen in the gateway's trace: the watcher woke 0.07 ms after the guard, and
the campaign thread's last steps took 0.12 ms instead of 0.02). Now a prewake during a
pause is remembered and the thread pauses again instead of going idle.

The first test drives the thread step by step (its pauses held by a gate, its query
recorded): no store. The second checks on a real Consul that a guard still reports an
operator's deletion of the leader key after back-to-back campaigns.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tenure
from tenure.adapters.consul import ConsulStore
from tenure.adapters.consul_http import ConsulHTTP, Watcher
from tenure.conformance.lab.cluster import Cluster

WAIT = 10.0
"""Seconds a step may take before the test fails (a bound, not a pause)."""


class Steps:
    """What the Watcher's thread did, for the test to wait on: pauses begun (each held
    until released), idle waits begun, queries sent."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pauses = 0
        self.released = 0
        self.idle_waits = 0
        self.queries = 0

    def until(self, what: str, check: Any) -> None:
        with self.cond:
            assert self.cond.wait_for(check, WAIT), (
                f"the watcher thread did not {what} (pauses {self.pauses}, idle waits "
                f"{self.idle_waits}, queries {self.queries})")

    def bump(self, name: str) -> int:
        with self.cond:
            setattr(self, name, getattr(self, name) + 1)
            self.cond.notify_all()
            return int(getattr(self, name))

    def release(self) -> None:
        self.bump("released")


class GatedStop(threading.Event):
    """The Watcher's stop event: a timed wait (its START_PAUSE) lasts until the test
    releases it, or until the event is set."""

    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        mine = self.steps.bump("pauses")
        with self.steps.cond:
            self.steps.cond.wait_for(lambda: self.steps.released >= mine or self.is_set())
        return self.is_set()

    def set(self) -> None:
        super().set()
        with self.steps.cond:
            self.steps.cond.notify_all()


class CountingCondition(threading.Condition):
    """The Watcher's condition: counts the thread's idle waits."""

    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    def wait(self, timeout: float | None = None) -> bool:
        self.steps.bump("idle_waits")
        return super().wait(timeout)


class RecordedQuery:
    """The Watcher's blocking query: counted, and answered only by an abort."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.aborted = threading.Event()

    def arm(self) -> None:
        self.aborted.clear()

    def abort(self) -> None:
        self.aborted.set()

    def get(self, path: str, params: dict[str, str], index: int) -> int | None:
        self.steps.bump("queries")
        self.aborted.wait()
        return None


@pytest.mark.unit
def test_a_prewake_during_the_pause_keeps_the_thread_from_idling_until_the_guard() -> None:
    steps = Steps()
    http = ConsulHTTP((("127.0.0.1", 9),), scheme="http", ca=None, dc=None, timeout=1.0,
                      token=None, description="no agent")
    watcher = Watcher(http)
    watcher._stop = GatedStop(steps)
    watcher._cond = CountingCondition(steps)
    watcher._query = RecordedQuery(steps)  # type: ignore[assignment]
    watcher._thread = threading.Thread(target=watcher._run, daemon=True)
    watcher._thread.start()
    try:
        steps.until("go idle", lambda: steps.idle_waits == 1)
        with watcher._cond:  # held: the thread is inside its wait
            pass
        watcher.prewake()  # campaign 1's lock request is out
        steps.until("pause", lambda: steps.pauses == 1)
        watcher.prewake()  # campaign 2's, back to back: the thread is still pausing
        steps.release()  # the pause ends before campaign 2's guard comes
        steps.until("pause again or go idle",
                    lambda: steps.pauses == 2 or steps.idle_waits == 2)
        assert steps.idle_waits == 1, (
            "the watcher went idle between a prewake and the guard that follows: the "
            "guard's notify wakes it on the winner's way back")
        watcher.guard("tenure/e/~leader", "session", 10, lambda: None)  # campaign 2 won
        steps.release()  # the second pause ends: the guard is watched, no third pause
        steps.until("query", lambda: steps.queries == 1)
        assert (steps.pauses, steps.idle_waits) == (2, 1)
    finally:
        watcher.close()
        http.close()


@pytest.mark.consul
def test_a_guard_after_back_to_back_campaigns_still_reports_a_deleted_leader_key(
    consul_cluster: Cluster,
) -> None:
    name = f"prewake-{time.monotonic_ns()}"
    lost: list[str] = []
    reported = threading.Event()

    def on_lost(_lead: tenure.Leadership, reason: str) -> None:
        lost.append(reason)
        reported.set()

    with tenure.connect(consul_cluster.url, ttl=2.0) as client:
        election = client.election(name)
        for _ in range(5):  # each within START_PAUSE of the previous one's prewake
            election.campaign(timeout=10).resign()
        lead = election.campaign(timeout=10, on_lost=on_lost)
        store = client.store
        assert isinstance(store, ConsulStore)
        store.http.call("DELETE", f"/v1/kv/{store._leader_key(name)}")
        assert reported.wait(WAIT), "the deleted leader key was not reported"
        assert lead.lost and lost and "no longer held" in lost[0]
