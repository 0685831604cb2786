"""What an idle client does NOT do: wake up to poll. Each wake-up of a thread costs CPU
(``tenure bench --only idle``) and, on a hot path, a thread hand-off; these tests count
them (no timing) on the real SQLite store.

* a waiting campaign sleeps until its bell, its ``retry_at`` or its cancel (a
  :class:`tenure.cancel.Flag`, or the client's close) -- no slices to check a cancel;
* renewals do not wake the session watchdog, nor does a win (the renewer wakes it),
  and the watchdog still ends the leadership at its deadline;
* SQLite renewals and withdrawals commit without an fsync; enqueues (the fencing
  token) and guarded writes with one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from thread_outcome import Outcome

import tenure
from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.cancel import Flag
from tenure.client import Client
from tenure.config import load_settings
from tenure.errors import CampaignCancelled, StoreUnavailable
from tenure.leadership import State

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def _url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/s.db"


def test_a_waiting_campaign_sleeps_until_its_cancel_flag_wakes_it(tmp_path: Path) -> None:
    # ~1.5 s. TTL 30 s: the leader's expiry (the waiter's retry_at) is far away, so any
    # wait that ends in the window below was a poll (the old loop: 5 per second).
    with tenure.connect(_url(tmp_path), ttl=30, candidate_id="leader") as leader_client, \
            tenure.connect(_url(tmp_path), ttl=30, candidate_id="waiter") as waiter_client:
        leader_client.election("e").campaign()
        board: Any = waiter_client.store._board  # type: ignore[attr-defined]
        real_wait = board._wait
        waits: list[float] = []
        waiting = threading.Event()

        def counted(*args: Any) -> bool:
            waits.append(time.monotonic())
            waiting.set()
            return bool(real_wait(*args))

        board._wait = counted
        cancel = Flag()
        outcome = Outcome(lambda: waiter_client.election("e").campaign(cancel=cancel))
        assert waiting.wait(10), "the campaign never waited on its bell"
        time.sleep(1.0)  # the window in which an idle waiter must not wake
        assert len(waits) == 1, f"an idle waiting campaign woke {len(waits) - 1} times"
        cancel.set()
        assert outcome.ended(10), "the cancel did not end the campaign"
        assert isinstance(outcome.error, CampaignCancelled)
        assert len(waits) == 1, "the cancel did not end the wait it interrupted"
        assert [c.candidate_id for c in leader_client.election("e").contenders()] == [
            "leader"], "the cancelled campaign left its entry"


class CountingCondition(threading.Condition):
    """The keeper's watchdog condition, counting the watchdog's wake-ups and who
    notified it."""

    def __init__(self, lock: Any) -> None:
        super().__init__(lock)
        self.wakes = 0
        self.notified_by: list[str] = []

    def wait(self, timeout: float | None = None) -> bool:
        try:
            return super().wait(timeout)
        finally:
            self.wakes += 1

    def notify_all(self) -> None:
        self.notified_by.append(threading.current_thread().name)
        super().notify_all()


class FailingStore(SQLiteStore):
    """The real SQLite store whose renewals can be made to fail."""

    fail = False

    def renew_session(self, held: frozenset[SQLiteTicket]) -> None:
        if self.fail:
            raise StoreUnavailable("injected: store unreachable")
        super().renew_session(held)


def _client(tmp_path: Path, ttl: float) -> tuple[Client, FailingStore, CountingCondition]:
    store = FailingStore(tmp_path / "s.db")
    client = Client(store, load_settings(_url(tmp_path), ttl=ttl, drift=0.0))
    watch = CountingCondition(client.keeper._mutex)
    client.keeper._watch_wake = watch  # before the first campaign starts the watchdog
    return client, store, watch


def test_renewals_do_not_wake_a_watchdog_that_guards_nothing(tmp_path: Path) -> None:
    # ~1.5 s: TTL 0.6 s, a renewal every 0.2 s.
    client, _store, watch = _client(tmp_path, ttl=0.6)
    with client:
        client.election("e").campaign().resign()
        time.sleep(0.1)
        renewals, wakes = client.keeper.renewals, watch.wakes
        time.sleep(1.2)
        assert client.keeper.renewals - renewals >= 3, "the session was not renewed"
        assert watch.wakes - wakes <= 1, (
            f"the watchdog woke {watch.wakes - wakes} times for "
            f"{client.keeper.renewals - renewals} renewals, guarding nothing")


def test_a_win_does_not_wake_the_watchdog_and_the_deadline_still_ends_it(
    tmp_path: Path,
) -> None:
    # ~2.5 s: TTL 1.5 s, renewals every 0.5 s; then renewals fail, and the watchdog
    # (woken by the renewer, not by the winning thread) ends the leadership on time.
    client, store, watch = _client(tmp_path, ttl=1.5)
    lost = threading.Event()
    lost_at: list[float] = []

    def on_lost(_lead: tenure.Leadership, _reason: str) -> None:
        lost_at.append(time.monotonic())
        lost.set()

    with client:
        client.election("warm").campaign().resign()  # opens the session, starts threads
        time.sleep(0.1)  # the renewer is asleep, well before the deadline
        before = len(watch.notified_by)
        lead = client.election("e").campaign(on_lost=on_lost)
        by_winner = [n for n in watch.notified_by[before:]
                     if n == threading.current_thread().name]
        assert by_winner == [], "the winning thread woke the watchdog itself"
        store.fail = True
        deadline = lead.deadline
        assert lost.wait(10), "the leadership outlived its deadline without on_lost"
        assert lost_at[0] >= deadline - 0.01, "lost before its deadline"
        assert lost_at[0] <= deadline + 1.0, (
            f"on_lost fired {lost_at[0] - deadline:.2f} s after the deadline")


def _synchronous(store: SQLiteStore) -> int:
    return int(store._db().execute("PRAGMA synchronous").fetchone()[0])


def test_session_writes_and_withdrawals_skip_the_fsync_tokens_and_data_do_not(
    tmp_path: Path,
) -> None:
    # < 0.1 s. 1 = NORMAL (no fsync at commit in WAL mode), 2 = FULL.
    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.open_session(5.0)
        assert _synchronous(store) == 1
        ticket = store.enqueue("e", "a", b"")
        assert _synchronous(store) == 2, "an enqueue (the fencing token) must be durable"
        store.renew_session(frozenset({ticket}))
        assert _synchronous(store) == 1
        store.guarded_write(ticket, "k", b"v")
        assert _synchronous(store) == 2, "a guarded write must be durable"
        store.withdraw(ticket)
        assert _synchronous(store) == 1
    finally:
        store.close()


def test_a_run_loop_stopped_by_a_flag_needs_no_polling_thread(tmp_path: Path) -> None:
    # ~0.5 s. A plain Event passed as stop= is checked by a helper thread every 0.1 s;
    # a Flag starts the stop itself when set.
    stop = Flag()
    leads: list[tenure.Leadership] = []
    leading = threading.Event()

    def work(lead: tenure.Leadership) -> None:
        leads.append(lead)
        leading.set()
        lead.ended.wait(30)

    with tenure.connect(_url(tmp_path), ttl=5, candidate_id="runner") as client:
        outcome = Outcome(lambda: client.election("e").run(work, stop=stop))
        assert leading.wait(10), "the run loop never led"
        pollers = [t for t in threading.enumerate() if t.name == "tenure-run-stop"]
        assert pollers == [], "a helper thread polls the stop flag"
        stop.set()
        assert outcome.ended(10) and outcome.error is None, outcome.error
        assert leads[0].state is State.RESIGNED
        # The entry is withdrawn by the stopping thread (maybe just after run returned).
        withdrawn = any(info is None for info in client.election("e").observe(timeout=10))
        assert withdrawn, "the stopped loop's entry was never withdrawn"
