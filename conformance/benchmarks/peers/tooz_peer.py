"""tooz's leader election, used the way its tutorial shows.

    coordinator = get_coordinator(url, member_id); coordinator.start(start_heart=True)
    coordinator.join_group(group); coordinator.watch_elected_as_leader(group, callback)
    while ...: coordinator.run_watchers(); time.sleep(0.1)

The election runs only inside ``run_watchers`` (a non-blocking lock attempt), so a
waiter learns of a free seat at its next poll: the tutorial's loop sleeps 0.1 s, and so
does this one. Resign is ``stand_down_group_leader`` where the driver has it
(ZooKeeper); the Redis driver has none, so we release the leader lock object it holds
(a new lock object for the same name lacks the owner's token, and the coordinator's
heart would keep renewing the held one: short of this, only ``stop()`` steps down).
tooz has no leadership-lost event.
URLs: ``zookeeper://h:p?timeout=S``, ``redis://h:p?timeout=S&lock_timeout=S``,
``etcd3+http://h:p?timeout=S`` (the etcd3gw driver).
"""

from __future__ import annotations

import contextlib
import threading
import time
from importlib.metadata import version
from typing import Any

from tooz import coordination

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback, Unsupported

POLL = 0.1
"""Seconds between ``run_watchers`` calls, as in tooz's leader-election tutorial."""


def tooz_version() -> str:
    """The installed tooz version."""
    return version("tooz")


class ToozContender(Contender):
    """One tooz coordinator running for one group's leadership."""

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        self.group = election.replace("/", "-").encode()
        self.coordinator = coordination.get_coordinator(url, member_id.encode())
        self.coordinator.start(start_heart=True)
        with contextlib.suppress(coordination.GroupAlreadyExist):
            self.coordinator.create_group(self.group).get()
        self.coordinator.join_group(self.group).get()
        self._elected = threading.Event()
        self.polls = 0

    def _on_elected(self, event: Any) -> None:
        self._elected.set()

    def campaign(self) -> dict[str, Any]:
        self._elected.clear()
        try:
            self.coordinator.watch_elected_as_leader(self.group, self._on_elected)
            while not self._elected.is_set():
                self.coordinator.run_watchers()
                self.polls += 1
                if not self._elected.is_set():
                    time.sleep(POLL)
        except NotImplementedError as exc:  # tooz.NotImplemented subclasses it
            raise Unsupported(
                f"tooz {tooz_version()}'s {type(self.coordinator).__name__} has no leader "
                f"election (watch_elected_as_leader/run_watchers: {exc})") from exc
        return {}

    def resign(self) -> None:
        self.coordinator.unwatch_elected_as_leader(self.group, self._on_elected)
        try:
            self.coordinator.stand_down_group_leader(self.group)
        except NotImplementedError:
            self._release_leader_lock()

    def _release_leader_lock(self) -> None:
        # tooz's Redis driver has no stand_down_group_leader, and a fresh lock object
        # for the same name does not hold the owner's token: release the very lock
        # object it acquired (its heart would otherwise keep renewing it for ever).
        name = self.coordinator._get_leader_lock(self.group).name  # type: ignore[attr-defined]
        for lock in list(getattr(self.coordinator, "_acquired_locks", ())):
            if lock.name == name:
                lock.release()

    def close(self) -> None:
        self.coordinator.stop()

    def counters(self) -> dict[str, float]:
        return {"polls": self.polls}
