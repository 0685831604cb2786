"""When a client counts as idle (``Client.idle``: ``tenure serve`` lends such clients to
the next caller) and what the core does with entries it cannot see: an enqueue whose
answer was lost makes its session never idle again; a session with less than half of
what a renewal grants left is not idle; a priority bell whose withdrawal failed is
withdrawn again after the next renewal. Each test ~1-2 s on SQLite."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.client import Client
from tenure.config import load_settings
from tenure.errors import CampaignTimeout, StoreUnavailable
from tenure.priority import BELL_SEGMENT, side_election

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def _until(predicate: object, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


class LosesEnqueueAnswers(SQLiteStore):
    """Each enqueue commits, then raises as if its answer was lost."""

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> SQLiteTicket:
        super().enqueue(election, candidate_id, value)
        raise StoreUnavailable("injected: the enqueue committed, its answer was lost")


def test_a_client_whose_enqueue_went_unanswered_is_never_idle_again(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    settings = load_settings(url, ttl=2.0)
    with Client(LosesEnqueueAnswers(tmp_path / "s.db"), settings) as lossy, \
            Client(SQLiteStore(tmp_path / "s.db"), settings) as control:
        with pytest.raises(CampaignTimeout):
            lossy.election("e").campaign(timeout=0.3)
        with pytest.raises(CampaignTimeout):  # waits behind the orphans: times out
            control.election("e").campaign(timeout=0.3)
        assert control.idle()  # a plain timeout leaves the client idle
        assert [c.candidate_id for c in control.election("e").contenders()]  # orphans
        assert not lossy.idle()  # until its session ends
        lossy.close()
        assert control.election("e").contenders() == []


class RenewalsHang(SQLiteStore):
    """Renewals block until ``release`` is set (the session is kept, not renewed)."""

    release = threading.Event()

    def renew_session(self, held: frozenset[SQLiteTicket]) -> None:
        self.release.wait(30)
        super().renew_session(held)


def test_a_session_with_less_than_half_its_validity_left_is_not_idle(tmp_path: Path) -> None:
    store = RenewalsHang(tmp_path / "s.db")
    client = Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=1.5))
    try:
        client.keeper.ensure_open()
        assert client.idle()
        keeper = client.keeper
        granted = keeper.lifetime * (1 - keeper.drift)
        _until(lambda: keeper.valid_until - time.monotonic() < granted / 2 - 0.05)
        still_valid = keeper.valid_until > time.monotonic()
        assert not client.idle()
        assert still_valid, "the test needs a session still within its deadline"
    finally:
        RenewalsHang.release.set()
        client.close()


class BellWithdrawFailsOnce(SQLiteStore):
    """The first withdrawal of a priority bell entry is refused as unavailable."""

    refused = 0

    def withdraw(self, ticket: SQLiteTicket) -> None:
        if BELL_SEGMENT in ticket.election and not self.refused:
            self.refused += 1
            raise StoreUnavailable("injected: bell withdrawal lost")
        super().withdraw(ticket)


def test_a_bell_whose_withdrawal_failed_is_withdrawn_after_the_next_renewal(
    tmp_path: Path,
) -> None:
    store = BellWithdrawFailsOnce(tmp_path / "s.db")
    with Client(store, load_settings(f"sqlite://{tmp_path}/s.db", ttl=1.5)) as client:
        lead = client.election("e").campaign(timeout=10, priority=3)
        assert store.refused == 1
        bell = side_election("e", BELL_SEGMENT)
        assert store.contenders(bell) != []
        lead.resign()
        assert not client.idle()  # the bell is left to withdraw
        _until(lambda: store.contenders(bell) == [] and client.idle())


def test_a_client_is_not_idle_while_a_handoff_runs_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tenure.handoff as handoff_module

    watching, go = threading.Event(), threading.Event()
    real_watch = handoff_module._watch

    def held_watch(*args: object, **kwargs: object) -> object:
        watching.set()
        go.wait(30)
        return real_watch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(handoff_module, "_watch", held_watch)
    url = f"sqlite://{tmp_path}/s.db"
    with Client(SQLiteStore(tmp_path / "s.db"), load_settings(url, ttl=2.0)) as a, \
            Client(SQLiteStore(tmp_path / "s.db"), load_settings(url, ttl=2.0)) as b:
        a.candidate_id, b.candidate_id = "a", "b"
        lead = a.election("e").campaign(timeout=10)
        won: list[object] = []
        waiter = threading.Thread(target=lambda: won.append(
            b.election("e").campaign(timeout=10)))
        waiter.start()
        _until(lambda: "b" in [c.candidate_id for c in a.election("e").contenders()])
        handing = threading.Thread(target=lead.handoff, args=("b",),
                                   kwargs={"timeout": 5.0, "on_failure": "resign"})
        handing.start()
        try:
            assert watching.wait(30)
            assert not a.idle(), "idle while its handoff follows the election"
        finally:
            go.set()
            handing.join(30)
            waiter.join(30)
        assert a.idle() and won
