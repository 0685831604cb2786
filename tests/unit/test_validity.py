"""The validity deadline: renewal failures are not a loss until the deadline, which is
computed from the SEND time of the last successful renewal; on_lost fires once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import tenure
from tenure import events
from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.client import Client
from tenure.config import load_settings
from tenure.errors import StoreUnavailable
from tenure.leadership import State

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


class FlakyStore(SQLiteStore):
    """The real SQLite store whose renewals can be made to fail or to be slow."""

    fail = False
    delay = 0.0
    sent: list[float]

    def renew_session(self, held: frozenset[SQLiteTicket]) -> None:
        self.sent.append(time.monotonic())
        if self.fail:
            raise StoreUnavailable("injected: store unreachable")
        time.sleep(self.delay)
        super().renew_session(held)


def flaky_client(tmp_path: Path, ttl: float) -> tuple[Client, FlakyStore]:
    store = FlakyStore(tmp_path / "s.db")
    store.sent = []
    return Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=ttl, drift=0.0)), store


def test_a_failing_store_is_not_a_loss_until_the_deadline(tmp_path: Path) -> None:
    # TTL 3 s: after a failed renewal (within a renewal interval, 1 s) the deadline is
    # still >= 1 s away, so the check that the leadership holds does not race a loaded
    # machine's scheduler (it did with TTL 1 s and a fixed 0.3 s sleep).
    client, store = flaky_client(tmp_path, ttl=3.0)
    calls: list[tuple[float, str]] = []
    fired = threading.Event()

    def on_lost(_lead: tenure.Leadership, reason: str) -> None:
        calls.append((time.monotonic(), reason))
        fired.set()

    with client:
        lead = client.election("e").campaign(on_lost=on_lost)
        tried = len(store.sent)
        store.fail = True
        failed_from = time.monotonic()
        deadline = lead.deadline
        assert deadline - failed_from <= 3.0
        end = failed_from + 10
        while len(store.sent) <= tried:  # a renewal was sent to the failing store
            assert time.monotonic() < end, "no renewal was attempted"
            time.sleep(0.01)
        assert time.monotonic() < deadline
        lead.ensure()  # still valid: a failing store alone is not a loss
        assert lead.wait_lost(timeout=10.0)
        # wait_lost may return as the watchdog thread ends the leadership, just before
        # it runs the callbacks: wait for the callback itself.
        assert fired.wait(timeout=10.0)
        assert len(calls) == 1
        fired_at, reason = calls[0]
        assert deadline <= fired_at < deadline + 1.0  # generous: a loaded machine
        assert "validity deadline passed" in reason and "injected" in reason
        with pytest.raises(tenure.LeadershipLost):
            lead.ensure()
        store.fail = False
        time.sleep(0.5)
        assert len(calls) == 1  # once, even though renewals succeed again


def test_the_deadline_counts_from_the_send_time_not_the_reply(tmp_path: Path) -> None:
    client, store = flaky_client(tmp_path, ttl=1.5)
    renewed: list[float] = []
    slow_done = threading.Event()

    def on_event(event: events.Event) -> None:
        # Events are process-wide: another test's client still renewing must not count.
        if (event.kind == "renewal" and event.fields.get("ok") and store.delay
                and event.fields.get("backend") == store.description):
            renewed.append(float(event.fields["valid_until"]))
            slow_done.set()

    unsubscribe = events.subscribe(on_event)
    try:
        with client:
            lead = client.election("e").campaign()
            store.delay = 0.3
            assert slow_done.wait(10), "no slow renewal completed"
            sent = store.sent[-1]
            # The reply came 0.3 s after the send: a deadline from the reply would be
            # 0.3 s later. (drift is 0 here.)
            assert renewed[0] == pytest.approx(sent + 1.5, abs=0.05)
            assert lead.deadline >= renewed[0]
    finally:
        unsubscribe()


def test_close_releases_leadership_at_once_for_others(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    a = tenure.connect(url, ttl=30)
    b = tenure.connect(url, ttl=30)
    a.election("e").campaign()
    won = threading.Event()
    threading.Thread(target=lambda: (b.election("e").campaign(), won.set()), daemon=True).start()
    time.sleep(0.2)
    assert not won.is_set()
    a.close()
    assert won.wait(5.0)  # well before the 30 s TTL
    b.close()


def test_cancel_stops_a_waiting_campaign_and_removes_its_entry(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url) as a, tenure.connect(url) as b:
        a.election("e").campaign()
        cancel = threading.Event()
        errors: list[BaseException] = []

        def campaign() -> None:
            try:
                b.election("e").campaign(cancel=cancel)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=campaign)
        thread.start()
        time.sleep(0.2)
        cancel.set()
        thread.join(timeout=2.0)
        assert not thread.is_alive()
        assert isinstance(errors[0], tenure.CampaignCancelled)
        import sqlite3

        with sqlite3.connect(tmp_path / "s.db") as db:
            assert db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 1


def test_a_leadership_is_a_context_manager_that_resigns(tmp_path: Path) -> None:
    with tenure.connect(f"sqlite://{tmp_path}/s.db") as client:
        election = client.election("e")
        with election.campaign(value="v") as lead:
            expected = tenure.LeaderInfo("e", client.candidate_id, b"v", lead.token)
            assert election.leader() == expected
        assert election.leader() is None
        # A resign is not a loss: the leadership ended as RESIGNED, with its reason.
        assert lead.state is State.RESIGNED and not lead.lost
        assert lead.lost_reason == "resigned"
        with pytest.raises(tenure.NotLeader, match="resigned"):
            lead.ensure()


class DownStore(SQLiteStore):
    """The real SQLite store that refuses the first ``failures`` enqueues."""

    failures = 0

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> SQLiteTicket:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("injected: store unreachable")
        return super().enqueue(election, candidate_id, value)


def test_a_campaign_keeps_trying_through_a_store_outage(tmp_path: Path) -> None:
    store = DownStore(tmp_path / "s.db")
    store.failures = 3
    with Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=1.0)) as client:
        lead = client.election("e").campaign(timeout=30)
        assert store.failures == 0 and not lead.lost


def test_a_campaign_timing_out_during_an_outage_names_the_store_error(tmp_path: Path) -> None:
    store = DownStore(tmp_path / "s.db")
    store.failures = 10**6
    client = Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=1.0))
    with client, pytest.raises(tenure.CampaignTimeout, match="last store error: injected"):
        client.election("e").campaign(timeout=0.5)


def test_timeout_zero_tries_once_without_waiting(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url) as a, tenure.connect(url) as b:
        lead = a.election("e").campaign(timeout=0)  # free: wins at once
        with pytest.raises(tenure.CampaignTimeout):
            b.election("e").campaign(timeout=0)  # taken: gives up at once
        lead.resign()
