"""The migrating store's own plumbing (tenure.adapters.migrating), on two real SQLite
stores: the session lifetime it promises is the shorter of the two stores', a loss in
both stores at once is reported once for the one leadership they make up, and a
``target`` observer reports only tokens in force while no offset is recorded."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import tenure
from tenure.adapters.migrating import MigratingStore, MigratingTicket
from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.client import Client
from tenure.config import load_settings
from tenure.leadership import State
from tenure.migration import migration_url, offset_key
from tenure.store import LeaderInfo, Ticket, Won

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


class HalfLifeStore(SQLiteStore):
    """The real SQLite store, promising half the TTL (as a store that stretches what it
    is sent must, cf. Consul)."""

    def open_session(self, ttl: float) -> float:
        super().open_session(ttl)
        return ttl / 2


class OffsetHeldBack(SQLiteStore):
    """The real SQLite store, holding a writer of a token offset at the door until
    released: the moment a first dual-target leader holds both stores but has not
    recorded the offset yet."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reached, self.release = threading.Event(), threading.Event()

    def guarded_write(self, ticket: SQLiteTicket, key: str, value: bytes) -> None:
        if key == offset_key(ticket.election):
            self.reached.set()
            assert self.release.wait(10), "the test did not release the offset write"
        super().guarded_write(ticket, key, value)


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


def test_a_target_observer_reports_no_raw_target_token_before_the_offset_is_recorded(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    # Source tokens run ahead of the target's, so that a raw target token shows.
    warm_up = SQLiteStore(source)
    warm_up.open_session(4.0)
    for _ in range(5):
        warm_up.withdraw(warm_up.enqueue("warm-up", "w", b""))
    warm_up.close_session()
    warm_up.close()
    observers = {stage: MigratingStore(SQLiteStore(source), SQLiteStore(target), stage)
                 for stage in ("dual-source", "target")}

    def seen(stage: str) -> tuple[LeaderInfo | None, LeaderInfo | None]:
        current, wait = observers[stage].observe_step("e")
        wait.signal.close()
        return observers[stage].leader("e"), current

    # A dual-source leader holds both stores and leads with its SOURCE token; the
    # target holds it with a lower raw token, which is no token of this election.
    dual = MigratingStore(SQLiteStore(source), SQLiteStore(target), "dual-source")
    dual.open_session(4.0)
    ticket = dual.enqueue("e", "dual", b"v")
    step = dual.try_lead(ticket)
    assert isinstance(step, Won)
    raw = dual.target.leader("e")
    assert raw is not None and raw.token < step.token
    expected = LeaderInfo("e", "dual", b"v", step.token)
    for stage in observers:
        assert seen(stage) == (expected, expected), stage
    dual.withdraw(ticket)
    dual.close_session()
    dual.close()
    # The first dual-target leader, holding both stores, before it records the offset:
    # it has not led yet (it will lead with target token + offset), so nobody is reported.
    held_back = OffsetHeldBack(target)
    first = MigratingStore(SQLiteStore(source), held_back, "dual-target")
    first.open_session(4.0)
    ticket = first.enqueue("e", "first", b"w")
    steps: list[object] = []
    stepper = threading.Thread(target=lambda: steps.append(first.try_lead(ticket)))
    stepper.start()
    try:
        assert held_back.reached.wait(10)
        assert first.target.leader("e") is not None  # the raw target leader exists
        for stage in observers:
            assert seen(stage) == (None, None), stage
    finally:
        held_back.release.set()
        stepper.join(10)
    won = steps[0]
    assert isinstance(won, Won)
    expected = LeaderInfo("e", "first", b"w", won.token)
    for stage in observers:  # the offset is recorded: the target's token + offset
        assert seen(stage) == (expected, expected), stage
    first.withdraw(ticket)
    first.close_session()
    first.close()
    for observer in observers.values():
        observer.close()
