"""Who a handoff reports as the taker (``tenure.handoff.taker``). SQLite and PostgreSQL
list the first live entry as leader, which during a handoff may be a waiter in the
middle of stepping aside: CI once saw ``Leadership.handoff`` return that waiter
('second', token 3) as the new leader while the named successor led with token 4. The
taker now comes from the consumed marker (``taken_by``, ``taken_token``), checked
against the store's listing. SQLite, about 1 s."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.cluster import wait_until
from tenure.errors import StoreUnavailable
from tenure.handoff import Marker, marker_key, taker
from tenure.store import LeaderInfo

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]


def test_the_taker_is_listed_only_when_the_listing_shows_it_with_the_token_it_took(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url, ttl=2, candidate_id="a") as client:
        lead = client.election("e").campaign(b"hello", timeout=10)
        done = Marker("m1", "a", "old", 1, 5.0, False, done=True, taken_by="a",
                      taken_token=lead.token)
        store = client.store
        assert taker(store, "e", done) == LeaderInfo("e", "a", b"hello", lead.token)
        older = Marker(**{**done.__dict__, "taken_token": 0})  # a marker of older tenure
        assert taker(store, "e", older) == LeaderInfo("e", "a", b"hello", lead.token)
        # The listing shows someone else (a waiter not yet stepped aside, or the taker
        # already gone): the marker says who took over and with which token.
        other = Marker(**{**done.__dict__, "taken_by": "b", "taken_token": lead.token + 1})
        assert taker(store, "e", other) == LeaderInfo("e", "b", b"", lead.token + 1)
        lead.resign()


def test_a_handoff_records_the_token_its_successor_leads_with(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url, ttl=2, candidate_id="leader") as client, \
            tenure.connect(url, ttl=2, candidate_id="next") as successor:
        lead = client.election("e").campaign(timeout=10)
        won, waiting = _queue_successor(client, successor)
        result = lead.handoff(to="next", timeout=20)
        waiting.join(30)
        assert result.ok, result.message
        assert won and result.leader is not None
        assert result.leader.token == won[0].token > lead.token
        marker = Marker.decode(client.store.read(marker_key("e")))
        assert marker is not None and (marker.taken_by, marker.taken_token) == (
            "next", won[0].token)
        won[0].resign()


def test_a_store_error_reading_the_taker_is_no_error_of_a_handoff_that_succeeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the consumed marker names the successor, the handoff succeeded: a store
    that cannot list the leader a moment later (``taker``'s read) is no reason to raise
    from ``handoff`` -- which never raises for the handoff itself, and would leave the
    caller believing it failed. The marker says who took over, with which token."""
    url = f"sqlite://{tmp_path}/s.db"
    with tenure.connect(url, ttl=2, candidate_id="leader") as client, \
            tenure.connect(url, ttl=2, candidate_id="next") as successor:
        lead = client.election("e").campaign(timeout=10)
        won, waiting = _queue_successor(client, successor)

        def unavailable(election: str) -> LeaderInfo | None:
            raise StoreUnavailable(f"cannot list the leader of {election!r} (test)")

        monkeypatch.setattr(client.store, "leader", unavailable)
        result = lead.handoff(to="next", timeout=20)
        waiting.join(30)
        assert won, "the successor did not take over"
        assert result.ok, result.message
        assert result.leader == LeaderInfo("e", "next", b"", won[0].token)
        won[0].resign()


def _queue_successor(client: tenure.Client, successor: tenure.Client,
                     ) -> tuple[list[tenure.Leadership], threading.Thread]:
    """``successor`` campaigning in "e" in a thread, listed as a contender; the list
    gets its leadership once it wins."""
    won: list[tenure.Leadership] = []
    waiting = threading.Thread(
        target=lambda: won.append(successor.election("e").campaign(timeout=30)))
    waiting.start()
    wait_until(lambda: "next" in [c.candidate_id for c in
                                  client.election("e").contenders()], 10, "next enqueued")
    return won, waiting
