"""``Election.run`` stopped from another thread returns only once the stop resigned,
its entry withdrawn: the leadership's ``ended`` is set before the withdrawal, and the
loop used to return on it while the stopping thread was still withdrawing. SQLite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from thread_outcome import Outcome

import tenure
from tenure.cancel import Flag
from tenure.leadership import Leadership
from tenure.store import Ticket

pytestmark = [pytest.mark.unit, pytest.mark.sqlite]

HOLD = 2.0
"""How long the withdrawal is held back unless run() returns first (the old loop did
within milliseconds; the fixed one waits out the hold, so this is the test's cost)."""


@pytest.mark.parametrize("stop_kind", ["flag", "event"])
def test_run_returns_only_after_the_stopping_thread_withdrew(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_kind: str) -> None:
    # ~2.5 s each
    with tenure.connect(f"sqlite://{tmp_path}/s.db", ttl=5, candidate_id="a") as client:
        election = client.election("e")
        working = threading.Event()
        returned = threading.Event()
        withdrawing = threading.Event()
        withdrawn_before_return: list[bool] = []
        real_withdraw = client.withdraw_now

        def withdraw_now(ticket: Ticket) -> None:
            withdrawing.set()
            returned.wait(HOLD)  # let run() return first, if it would
            withdrawn_before_return.append(not returned.is_set())
            real_withdraw(ticket)

        monkeypatch.setattr(client, "withdraw_now", withdraw_now)

        def work(lead: Leadership) -> None:
            working.set()
            lead.ended.wait()

        stop = Flag() if stop_kind == "flag" else threading.Event()

        def body() -> None:
            try:
                election.run(work, stop=stop)
            finally:
                returned.set()

        outcome = Outcome(body)
        assert working.wait(30), outcome.error
        stop.set()
        assert withdrawing.wait(30)
        assert outcome.ended(30) and outcome.error is None, outcome.error
        assert withdrawn_before_return == [True], "run() returned mid-withdrawal"
        assert election.leader() is None
        assert not client.store.contenders("e")
