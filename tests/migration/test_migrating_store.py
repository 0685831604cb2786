"""The migrating store's own plumbing (tenure.adapters.migrating), on two real SQLite
stores: the session lifetime it promises is the shorter of the two stores', and a loss
in both stores at once is reported once for the one leadership they make up."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import tenure
from tenure.adapters.migrating import MigratingStore, MigratingTicket
from tenure.adapters.sqlite import SQLiteStore
from tenure.client import Client
from tenure.config import load_settings
from tenure.leadership import State
from tenure.migration import migration_url
from tenure.store import Ticket

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


class HalfLifeStore(SQLiteStore):
    """The real SQLite store, promising half the TTL (as a store that stretches what it
    is sent must, cf. Consul)."""

    def open_session(self, ttl: float) -> float:
        super().open_session(ttl)
        return ttl / 2


def test_the_session_lifetime_is_the_shorter_of_the_two_stores(tmp_path: Path) -> None:
    for stage in ("dual-source", "dual-target"):
        store = MigratingStore(SQLiteStore(tmp_path / f"{stage}-a.db"),
                               HalfLifeStore(tmp_path / f"{stage}-b.db"), stage)
        try:
            assert store.open_session(4.0) == 2.0
            store.close_session()
        finally:
            store.close()
    only_source = MigratingStore(SQLiteStore(tmp_path / "s-a.db"),
                                 HalfLifeStore(tmp_path / "s-b.db"), "source")
    try:
        assert only_source.open_session(4.0) == 4.0  # the target is not used yet
        only_source.close_session()
    finally:
        only_source.close()


def test_a_loss_in_both_stores_is_reported_once_for_the_leadership(tmp_path: Path) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    url = migration_url("dual-source", f"sqlite://{source}", f"sqlite://{target}")
    store = MigratingStore(SQLiteStore(source), SQLiteStore(target), "dual-source")
    client = Client(store, load_settings(url, ttl=1.0, drift=0.0))
    reports: list[str] = []
    forward = store.report_loss

    def counted(ticket: Ticket, reason: str) -> None:
        reports.append(reason)
        forward(ticket, reason)

    store.report_loss = counted
    # Hold back the core's withdrawal of the lost entries until the check below, so that
    # the second store's report still finds the leadership's entry.
    release = threading.Event()
    honest_withdraw = store.withdraw

    def held_back_withdraw(ticket: MigratingTicket) -> None:
        release.wait(10)
        honest_withdraw(ticket)

    store.withdraw = held_back_withdraw  # type: ignore[method-assign]
    fired = threading.Event()
    lost: list[str] = []

    def on_lost(_lead: tenure.Leadership, reason: str) -> None:
        lost.append(reason)
        fired.set()

    with client:
        lead = client.election("e").campaign(timeout=10, on_lost=on_lost)
        # Right after a renewal, an operator deletes the candidate's entries in BOTH
        # stores behind its back: the next renewal (of both sessions) finds both gone.
        renewals = client.keeper.renewals
        while client.keeper.renewals == renewals:
            time.sleep(0.01)  # the renewer's progress: nothing else to wait on
        for path in (source, target):
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM candidates WHERE election = 'e'")
        assert fired.wait(5.0)
        time.sleep(0.5)  # the rest of that renewal, and the next one
        assert lead.state is State.LOST
        assert len(reports) == 1 and len(lost) == 1, (reports, lost)
        assert lost[0].startswith("source store (sqlite://"), lost[0]
        release.set()
