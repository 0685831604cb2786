"""A withdrawal that fails is not forgotten: the keeper withdraws the entry again after
its next successful renewal, so a resigned leader's entry does not block the election
for as long as the client lives (its session keeps the entry alive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.adapters.sqlite import SQLiteStore, SQLiteTicket
from tenure.client import Client
from tenure.config import load_settings
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]

TTL = 6.0
"""Long enough that no renewal is starved into an expiry on loaded cores (the retry
comes with the next renewal, a third of it: about 2 s), so the election can only be
freed by the retry, never by the session expiring."""


class WithdrawFailsOnce(SQLiteStore):
    """The real SQLite store whose first withdrawal is refused as unavailable."""

    refusals = 1
    attempts = 0

    def withdraw(self, ticket: SQLiteTicket) -> None:
        self.attempts += 1
        if self.refusals:
            self.refusals -= 1
            raise StoreUnavailable("injected: withdrawal lost")
        super().withdraw(ticket)


def test_a_failed_withdrawal_is_retried_after_the_next_renewal(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    store = WithdrawFailsOnce(tmp_path / "s.db")
    with Client(store, load_settings(url, ttl=TTL)) as a, \
            Client(SQLiteStore(tmp_path / "s.db"), load_settings(url, ttl=TTL)) as b:
        lead = a.election("e").campaign(timeout=10)
        renewals, generation = a.keeper.renewals, a.keeper.generation
        lead.resign()
        # The refused withdrawal left the entry: our live session still makes it lead.
        assert store.attempts == 1
        assert b.election("e").leader() is not None
        successor = b.election("e").campaign(timeout=2 * TTL)
        assert successor.token > lead.token
        # It was the keeper's retry after a renewal that freed the election: the
        # session was renewed and never replaced (it did not expire).
        assert a.keeper.renewals > renewals
        assert a.keeper.generation == generation
        assert store.attempts == 2
