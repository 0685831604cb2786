"""A renewal paused inside its write transaction must not let a waiter lead.

Found by the fault soak (libfaketime rounds with SIGSTOPs): a leader's renewal took
the write lock and its ``now`` just before its session expired, was paused, and
committed after a waiter had read the session as expired and led -- reviving the
session under a validity deadline that overlapped the waiter's leadership.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tenure.adapters.sqlite import SQLiteStore
from tenure.store import Wait, Won

pytestmark = [pytest.mark.sqlite]

TTL = 2.0


class _PausingConnection:
    """Forwards to a real connection, but holds the session renewal's UPDATE until
    ``release`` is set (the lock is held and ``now`` taken by then)."""

    def __init__(self, db: sqlite3.Connection, paused: threading.Event,
                 release: threading.Event) -> None:
        self._db, self._paused, self._release = db, paused, release

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("UPDATE sessions SET expires_at"):
            self._paused.set()
            assert self._release.wait(30)
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _expiry(path: Path, session_id: str) -> float:
    with sqlite3.connect(path) as db:
        return float(db.execute("SELECT expires_at FROM sessions WHERE id = ?",
                                (session_id,)).fetchone()[0])


def test_a_waiter_does_not_lead_while_a_paused_renewal_can_still_revive_the_leader(
    tmp_path: Path,
) -> None:
    leader, waiter = SQLiteStore(tmp_path / "store.db"), SQLiteStore(tmp_path / "store.db")
    try:
        leader.open_session(TTL)
        held = leader.enqueue("e", "leader", b"")
        assert isinstance(leader.try_lead(held), Won)
        waiter.open_session(30.0)
        queued = waiter.enqueue("e", "waiter", b"")
        assert isinstance(waiter.try_lead(queued), Wait)

        expires = _expiry(tmp_path / "store.db", leader._session_id)
        paused, release = threading.Event(), threading.Event()
        outcome: list[BaseException | None] = []

        def renew_paused() -> None:
            leader._local.db = _PausingConnection(leader._db(), paused, release)
            try:
                leader.renew_session(frozenset({held}))
                outcome.append(None)
            except BaseException as exc:  # reported to the test thread below
                outcome.append(exc)

        while time.monotonic() < expires - 0.3:
            time.sleep(0.01)  # reach the last moments of the session's life
        renewer = threading.Thread(target=renew_paused)
        renewer.start()
        assert paused.wait(10)  # lock held, now taken, session still alive
        while time.monotonic() < expires + 0.1:
            time.sleep(0.01)  # the session has expired while the renewal is paused

        steps: list[tuple[object, float]] = []
        stepper = threading.Thread(
            target=lambda: steps.append((waiter.try_lead(queued), time.monotonic())))
        stepper.start()
        stepper.join(0.5)  # a step decided by a read returns at once (the old bug)
        release.set()
        renewer.join(30)
        stepper.join(30)
        assert outcome == [None], f"the paused renewal failed: {outcome}"
        renewed_until = _expiry(tmp_path / "store.db", leader._session_id)
        step, at = steps[0]
        assert not isinstance(step, Won) or at >= renewed_until, (
            f"the waiter led at {at:.3f} while the leader's renewal (committed after) "
            f"kept it alive until {renewed_until:.3f}")
        assert isinstance(step, Wait)
    finally:
        leader.close()
        waiter.close()
