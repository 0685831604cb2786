"""``tenure run --prefer-priority`` end to end on SQLite: a real ``tenure run`` leader
and two library waiters, the first without a priority, the second with priority 5.

With the flag, the leader's command exiting by itself is the safe point: the leader
hands the leadership to the priority-5 waiter, ahead of the earlier one, and exits
with the command's status. Without it (the control), arrival order decides: the
earlier waiter leads next. About 3 s per case."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from test_run import tenure as spawn_tenure  # tests/cli is on sys.path (rootdir import)

import tenure
from tenure.errors import CampaignCancelled

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

TTL = 3.0
WAIT = 30.0
STATUS = 7
JOB = 'while [ ! -e "$GO" ]; do sleep 0.02; done; exit 7'


class _Waiter:
    """A library candidate campaigning in a thread until it wins or is cancelled."""

    def __init__(self, url: str, election: str, name: str, priority: int | None) -> None:
        self.client = tenure.connect(url, ttl=TTL, candidate_id=name)
        self.won = threading.Event()
        self.cancel = threading.Event()
        self._election, self._priority = election, priority
        self.thread = threading.Thread(target=self._campaign, daemon=True)
        self.thread.start()

    def _campaign(self) -> None:
        try:
            self.client.election(self._election).campaign(priority=self._priority,
                                                          cancel=self.cancel)
        except CampaignCancelled:
            return
        self.won.set()

    def close(self) -> None:
        self.cancel.set()
        self.thread.join(WAIT)
        self.client.close()


def _until(what: str, done: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < end, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("prefer", [True, False], ids=["prefer-priority", "arrival-order"])
def test_the_leader_hands_off_to_the_higher_priority_waiter_when_its_command_exits(
    tmp_path: Path, prefer: bool,
) -> None:
    url = f"sqlite://{tmp_path}/store.db"
    election = f"prefer/{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    flags = ["--prefer-priority"] if prefer else []
    leader = spawn_tenure("run", "--backend", url, "--election", election, "--ttl",
                          f"{TTL:g}", *flags, "--", "sh", "-c", JOB,
                          env={**os.environ, "GO": str(go)})
    waiters: list[_Waiter] = []
    try:
        with tenure.connect(url, ttl=TTL) as watcher:
            view = watcher.election(election)
            _until("tenure run leads", lambda: view.leader_or_none() is not None)
            waiters.append(_Waiter(url, election, "early", None))
            _until("early queues", lambda: len(view.contenders()) == 2)
            waiters.append(_Waiter(url, election, "preferred", 5))
            _until("preferred queues with its priority",
                   lambda: [c.priority for c in view.contenders()] == [0, 0, 5])
            go.touch()
            _, stderr = leader.communicate(timeout=WAIT)
            assert leader.returncode == STATUS, stderr.decode()
            early, preferred = waiters
            winner, other = (preferred, early) if prefer else (early, preferred)
            assert winner.won.wait(WAIT), stderr.decode()
            assert not other.won.is_set()
            leading = view.leader()
            assert leading is not None and leading.candidate_id == (
                "preferred" if prefer else "early")
            handed = "handed off election" in stderr.decode()
            assert handed == prefer, stderr.decode()
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.communicate(timeout=WAIT)
        for waiter in waiters:
            waiter.close()

