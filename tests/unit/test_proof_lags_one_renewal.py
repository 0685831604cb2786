"""A store whose renewal proves only the previous renewal's send time
(``Store.proof_lags_one_renewal``, as ZooKeeper's followers): after each successful
renewal the deadline is the PREVIOUS success's send time (the open's, for the first)
+ lifetime x (1 - drift); after the open, the open's send time + the same."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tenure import events
from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.client import Client
from tenure.config import load_settings

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]

TTL = 0.9
DRIFT = 0.1


class LaggingStore(SQLiteStore):
    """The real SQLite store, declaring that a renewal proves the previous one's send
    time, recording when each session open and successful renewal was sent."""

    proof_lags_one_renewal = True
    opened: list[float]
    sent: list[float]

    def open_session(self, ttl: float) -> float:
        self.opened.append(time.monotonic())
        return super().open_session(ttl)

    def renew_session(self, held: frozenset[SQLiteTicket]) -> None:
        sent = time.monotonic()
        super().renew_session(held)
        self.sent.append(sent)  # successful ones only


def test_a_renewals_deadline_counts_from_the_previous_successful_send(tmp_path: Path) -> None:
    store = LaggingStore(tmp_path / "s.db")
    store.opened, store.sent = [], []
    client = Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=TTL, drift=DRIFT))
    deadlines: list[float] = []
    three = threading.Event()

    def on_event(event: events.Event) -> None:
        if (event.kind == "renewal" and event.fields.get("ok")
                and event.fields.get("backend") == store.description):
            deadlines.append(event.fields["valid_until"])
            if len(deadlines) >= 3:
                three.set()

    unsubscribe = events.subscribe(on_event)
    try:
        with client:
            lead = client.election("lag").campaign(timeout=10)
            lifetime = client.keeper.lifetime * (1 - DRIFT)
            assert len(store.opened) == 1
            assert three.wait(timeout=20), "three renewals did not succeed"
            got = deadlines[:3]
            sends = store.sent[:3]
            previous = [store.opened[0], sends[0], sends[1]]
            for deadline, prev, this in zip(got, previous, sends, strict=True):
                # The keeper reads its send time just before the store's wrapper does.
                assert deadline == pytest.approx(prev + lifetime, abs=0.01), (
                    deadline - prev, deadline - this)
                assert deadline < this + lifetime - 0.1  # not this renewal's send time
            lead.resign()
    finally:
        unsubscribe()
