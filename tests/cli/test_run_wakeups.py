"""``tenure run`` forwards its deadline to the keeper when a renewal moves it, and does
not wake in between to look (it used to read the deadline 20-200 times a second). Run
in this process (``tenure.cli.main.main``) so that reads and extensions can be counted;
SQLite, TTL 1 s, about 1 s."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tenure import events
from tenure.childproc import DeadlineKeeper
from tenure.cli.main import main
from tenure.leadership import Leadership

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

RENEWALS = 3
"""Renewals the command waits for before it exits."""


def test_the_deadline_is_forwarded_per_renewal_and_never_polled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = tmp_path / "renewed"
    lock = threading.Lock()
    renewals: list[float] = []
    reads = 0
    extends: list[tuple[float, float]] = []  # (deadline sent, leadership's deadline then)
    leads: list[Leadership] = []

    original = Leadership.deadline.fget
    assert original is not None

    def counted(self: Leadership) -> float:
        nonlocal reads
        with lock:
            reads += 1
            if not leads:
                leads.append(self)
        return original(self)

    real_extend = DeadlineKeeper.extend

    def extend(self: DeadlineKeeper, deadline: float, known_at: float | None = None) -> bool:
        ours = original(leads[0])
        with lock:
            extends.append((deadline, ours))
        return real_extend(self, deadline, known_at)

    def on_event(event: events.Event) -> None:
        if event.kind == "renewal" and event.fields.get("ok"):
            with lock:
                renewals.append(event.fields["valid_until"])
                if len(renewals) == RENEWALS:
                    done.touch()  # the command exits: counted, not timed

    monkeypatch.setattr(Leadership, "deadline", property(counted))
    monkeypatch.setattr(DeadlineKeeper, "extend", extend)
    unsubscribe = events.subscribe(on_event)
    try:
        status = main(["run", "--backend", f"sqlite://{tmp_path}/run.db", "--election",
                       "wakeups", "--ttl", "1", "--grace", "1", "--", "sh", "-c",
                       f"while [ ! -e {done} ]; do sleep 0.02; done"])
    finally:
        unsubscribe()
    assert status == 0
    with lock:
        seen, read, sent = len(renewals), reads, list(extends)
    assert seen >= RENEWALS
    # each renewal forwarded (the first ones may come before the keeper is attached:
    # attach sends the latest), and none later than the leadership's own deadline
    assert 1 <= len(sent) <= seen, (sent, seen)
    assert all(deadline <= ours for deadline, ours in sent), sent
    # one read to start the keeper, one per forwarded renewal, a few at the end; the
    # old helper thread read it every renew_interval / 10 (~30 reads a second here)
    assert read <= seen + 8, (read, seen)
