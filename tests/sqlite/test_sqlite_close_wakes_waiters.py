"""Closing a SQLite client from another thread wakes its waiting threads cleanly.

A campaign or observer of a SQLite client waits in ``select`` on the thread's inotify
descriptor (tenure.adapters.filebell). Closing the client used to close those
descriptors under the waiters: they failed with ``OSError: [Errno 9] Bad file
descriptor`` (or could read an unrelated file that reused the number). Now close
wakes them first (the wait returns True); a campaign then ends with a TenureError that
says the client or store was closed, an observer ends (or says so too).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from thread_outcome import Outcome

import tenure
from tenure.adapters.filebell import BellBoard
from tenure.errors import TenureError

pytestmark = [pytest.mark.sqlite]

TTL = 5.0
BOUND = 10.0  # seconds a woken waiter may take to end on loaded cores (it takes ms)


def _assert_ended_cleanly(outcome: Outcome, what: str) -> None:
    outcome.thread.join(BOUND)
    assert not outcome.thread.is_alive(), f"{what} still waits {BOUND:g} s after close"
    assert not outcome.returned, f"{what} returned as if nothing happened"
    assert isinstance(outcome.error, TenureError), f"{what} raised {outcome.error!r}"
    assert "closed" in str(outcome.error)


def test_closing_a_client_ends_its_waiting_campaign_and_observer_with_a_clear_error(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with tenure.connect(url, ttl=TTL) as holder:
        holder.election("e").campaign(timeout=BOUND)
        waiter = tenure.connect(url, ttl=TTL)
        try:
            observed = threading.Event()

            def observe() -> None:
                for _ in waiter.election("o").observe():
                    observed.set()

            observer = Outcome(observe)
            campaign = Outcome(lambda: waiter.election("e").campaign())
            deadline = time.monotonic() + BOUND
            while len(holder.election("e").contenders()) < 2:
                assert time.monotonic() < deadline, "the waiter never queued"
                time.sleep(0.01)
            assert observed.wait(BOUND), "the observer never yielded the first state"
        finally:
            waiter.close()
        _assert_ended_cleanly(campaign, "the campaign")
        observer.thread.join(BOUND)  # an observer of a closed client may also just end
        assert not observer.thread.is_alive(), f"the observer still waits {BOUND:g} s"
        assert observer.returned or (
            isinstance(observer.error, TenureError) and "closed" in str(observer.error)
        ), observer.error
        assert holder.election("e").leader_or_none() is not None


def test_close_wakes_a_listener_blocked_in_wait_and_refuses_new_ones(tmp_path: Path) -> None:
    board = BellBoard()
    listening = threading.Event()
    woken: list[bool] = []

    def wait() -> None:
        listener = board.listen(tmp_path / "bell")
        listening.set()
        woken.append(listener.wait(60.0))
        woken.append(listener.wait(60.0))  # and from then on, at once

    waiter = Outcome(wait)
    assert listening.wait(BOUND)
    board.close()
    waiter.thread.join(BOUND)
    assert not waiter.thread.is_alive(), f"the listener still waits {BOUND:g} s after close"
    assert waiter.error is None and waiter.returned
    assert woken == [True, True]
    with pytest.raises(TenureError, match="closed"):
        board.listen(tmp_path / "bell")
    board.close()  # idempotent


def test_a_run_loop_waiting_to_lead_ends_cleanly_when_its_client_is_closed(
    tmp_path: Path,
) -> None:
    """The module promise of tenure.runloop: Client.close ends Election.run cleanly."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with tenure.connect(url, ttl=TTL) as holder:
        holder.election("e").campaign(timeout=BOUND)
        waiter = tenure.connect(url, ttl=TTL)
        worked = threading.Event()
        loop = Outcome(lambda: waiter.election("e").run(lambda lead: worked.set()))
        deadline = time.monotonic() + BOUND
        while len(holder.election("e").contenders()) < 2:
            assert time.monotonic() < deadline, "the run loop never queued"
            time.sleep(0.01)
        waiter.close()
        loop.thread.join(BOUND)
        assert not loop.thread.is_alive(), f"the run loop still runs {BOUND:g} s after close"
        assert loop.error is None, f"the run loop raised {loop.error!r}"
        assert loop.returned and not worked.is_set()
