"""A leader that waits does not wake up to look: ``Leadership.wait_lost()`` and a
:class:`~tenure.handoff_requests.HandoffListener` sleep on the leadership's ``ended``
Flag (woken by a resign, a loss, or the watchdog at the deadline), not in slices. The
waits on ``ended`` are counted (no timing) over a few renewals, SQLite, TTL 1 s, about
1 s per test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from thread_outcome import Outcome

import tenure
from tenure import events
from tenure.handoff_requests import HandoffListener
from tenure.leadership import Leadership

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]

RENEWALS = 4
"""Renewals (TTL 1 s: one every 1/3 s) each test waits through: the old slices (at
most the deadline, 1 s; the listener's 0.2 s) woke at least once meanwhile."""


@pytest.fixture
def renewed() -> Iterator[Callable[[int], bool]]:
    """``renewed(n)``: waits (up to 30 s) until ``n`` more successful renewals happened."""
    seen = threading.Condition()
    count = [0]

    def on_event(event: events.Event) -> None:
        if event.kind == "renewal" and event.fields.get("ok"):
            with seen:
                count[0] += 1
                seen.notify_all()

    def wait(n: int) -> bool:
        with seen:
            target = count[0] + n
            return seen.wait_for(lambda: count[0] >= target, timeout=30)

    unsubscribe = events.subscribe(on_event)
    try:
        yield wait
    finally:
        unsubscribe()


def _count_waits(lead: Leadership, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``wait`` on ``lead.ended`` from now on, with its timeout."""
    calls: list[Any] = []
    ended = lead.ended
    real_wait = type(ended).wait

    def wait(self: threading.Event, timeout: float | None = None) -> bool:
        if self is ended:
            calls.append(timeout)
        return real_wait(self, timeout)

    monkeypatch.setattr(type(ended), "wait", wait)
    return calls


def test_wait_lost_sleeps_until_the_leadership_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        renewed: Callable[[int], bool]) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=1, candidate_id="a") as client:
        lead = client.election("e").campaign()
        calls = _count_waits(lead, monkeypatch)
        answer: list[bool] = []
        outcome = Outcome(lambda: answer.append(lead.wait_lost()))
        assert renewed(RENEWALS)
        assert not outcome.ended(0)
        lead.resign()
        assert outcome.ended(10) and answer == [True], outcome.error
    assert len(calls) == 1, f"wait_lost woke {len(calls) - 1} times to look: {calls}"


def test_wait_lost_with_a_timeout_returns_false_while_held(tmp_path: Path) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=1, candidate_id="a") as client:
        lead = client.election("e").campaign()
        assert lead.wait_lost(0.01) is False
        lead.resign()
        assert lead.wait_lost(0) is True


def test_a_handoff_listener_sleeps_until_the_leadership_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        renewed: Callable[[int], bool]) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=1, candidate_id="a") as client:
        lead = client.election("e").campaign()
        calls = _count_waits(lead, monkeypatch)
        before = set(threading.enumerate())
        listener = HandoffListener(lead)
        assert renewed(RENEWALS)
        assert not calls, f"the listener woke {len(calls)} times to look at the end"
        lead.resign()  # the end wakes it: its thread ends
        listener._thread.join(10)
        assert not listener._thread.is_alive()
        started = set(threading.enumerate()) - before
        assert not started, f"threads left behind: {started}"


def test_a_handoff_listener_stops_when_asked(tmp_path: Path) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=1, candidate_id="a") as client:
        lead = client.election("e").campaign()
        listener = HandoffListener(lead)
        listener.stop()  # returns once its thread ended
        assert not listener._thread.is_alive()
        assert not lead.ended.is_set()
        lead.resign()
