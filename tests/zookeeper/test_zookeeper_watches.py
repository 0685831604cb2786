"""What tenure.adapters.zookeeper_watches promises, without a server: a signal fires on
its election's watch events and on every connection state change, never stacks kazoo
watches, is disarmed when closed; a leading node is reported lost once (deleted, LOST,
gone after a reconnect), never after forget, and never on kazoo's thread; a ticket's own
watch is armed once per connection, and a waiter whose node goes is woken, not reported;
what is parked on a predecessor runs once, before the signal, when it is deleted."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from kazoo.client import KazooState
from kazoo.protocol.states import EventType, KeeperState, WatchedEvent

from tenure.adapters.zookeeper import ZooKeeperTicket
from tenure.adapters.zookeeper_watches import Watch, Watches

pytestmark = [pytest.mark.zookeeper, pytest.mark.unit]


def event(kind: EventType, path: str = "/e/c-1") -> WatchedEvent:
    return WatchedEvent(kind, KeeperState.CONNECTED, path)


class Answer:
    """A kazoo async result that already holds its answer."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> Any:
        return self.value


@dataclass
class FakeZooKeeper:
    """Answers ``exists`` from ``nodes`` and keeps the watches set on each path."""

    nodes: set[str] = field(default_factory=set)
    watches: dict[str, list[Watch]] = field(default_factory=dict)

    def exists_async(self, path: str, watch: Watch) -> Answer:
        self.watches.setdefault(path, []).append(watch)
        return Answer(object() if path in self.nodes else None)


class FakeConnection:
    def __init__(self, zk: FakeZooKeeper) -> None:
        self.current = zk

    def call(self, start: Any, *args: Any, timeout: float | None = None) -> Any:
        return start(*args).get()


class Reports:
    """The loss channel: records (ticket, reason, thread) of each report."""

    def __init__(self) -> None:
        self.seen: list[tuple[ZooKeeperTicket, str, threading.Thread]] = []

    def __call__(self, ticket: ZooKeeperTicket, reason: str) -> None:
        self.seen.append((ticket, reason, threading.current_thread()))

    def settled(self) -> list[tuple[ZooKeeperTicket, str, threading.Thread]]:
        """The reports, once every worker thread the watches started has finished."""
        for thread in threading.enumerate():
            if thread.name == "tenure-zookeeper":
                thread.join(timeout=10)
                assert not thread.is_alive()
        return self.seen


def ticket(path: str = "/e/c-1", session: int = 7) -> ZooKeeperTicket:
    return ZooKeeperTicket("e", "me", path, 1, token=1, owner=session, guid="g")


def setup() -> tuple[Watches, FakeZooKeeper, Reports]:
    zk, reports = FakeZooKeeper(), Reports()
    return Watches(FakeConnection(zk), reports), zk, reports  # type: ignore[arg-type]


def lead(watches: Watches, zk: FakeZooKeeper, mine: ZooKeeperTicket) -> Any:
    """What a step that finds ``mine`` leading does: arm its own watch, mark it leading."""
    stat = watches.arm_own_async(zk, mine).get()  # type: ignore[arg-type]
    watches.lead(mine)
    return stat


def test_a_signal_fires_on_its_elections_watch_and_on_every_state_change() -> None:
    watches, _, _ = setup()
    with watches.armed("a") as a, watches.armed("b") as b:
        pass
    watches.watch("a")(event(EventType.DELETED))
    assert a.wait(0) and not b.wait(0)
    assert watches.notifications == 1
    watches.state_changed(KazooState.SUSPENDED)
    assert b.wait(0)
    # kazoo's NONE event (a watch dropped on a disconnect) wakes, but is not counted
    with watches.armed("a") as again:
        watches.watch("a")(event(EventType.NONE))
    assert again.wait(0) and watches.notifications == 1


def test_an_elections_callbacks_are_one_for_kazoo_so_watches_never_stack() -> None:
    watches, _, _ = setup()
    callbacks = {watches.watch("a") for _ in range(5)}  # kazoo keeps a set per path
    assert len(callbacks) == 1
    assert watches.watch("a") != watches.watch("b")


def test_a_closed_signal_and_one_whose_read_raised_are_disarmed() -> None:
    watches, _, _ = setup()
    with watches.armed("a") as closed:
        pass
    closed.close()
    with pytest.raises(RuntimeError), watches.armed("a") as failed:
        raise RuntimeError("the read failed")
    watches.watch("a")(event(EventType.CHANGED))
    watches.state_changed(KazooState.SUSPENDED)
    assert not closed.wait(0) and not failed.wait(0)


def test_a_deleted_leading_node_is_reported_once_and_not_on_kazoos_thread() -> None:
    watches, zk, reports = setup()
    mine = ticket()
    zk.nodes.add(mine.key)
    assert lead(watches, zk, mine) is not None
    (watch,) = zk.watches[mine.key]
    watch(event(EventType.DELETED))
    watch(event(EventType.DELETED))
    assert [(t, "deleted" in r) for t, r, _ in reports.settled()] == [(mine, True)]
    assert reports.seen[0][2] is not threading.current_thread()
    assert mine.key not in watches.leading


def test_forget_before_the_event_reports_nothing() -> None:
    watches, zk, reports = setup()
    mine = ticket()
    zk.nodes.add(mine.key)
    lead(watches, zk, mine)
    watches.forget(mine)  # withdrawn
    zk.watches[mine.key][0](event(EventType.DELETED))
    watches.state_changed(KazooState.LOST)
    mine.withdrawn = True
    watches.report_gone([mine])
    assert reports.settled() == []


def test_lost_reports_every_leading_node_once_off_kazoos_thread() -> None:
    watches, zk, reports = setup()
    nodes = [ticket(f"/e/c-{i}") for i in range(3)]
    for mine in nodes:
        zk.nodes.add(mine.key)
        lead(watches, zk, mine)
    watches.state_changed(KazooState.LOST)
    watches.state_changed(KazooState.LOST)
    assert sorted(t.key for t, _, _ in reports.settled()) == sorted(t.key for t in nodes)
    assert all("session expired" in r for _, r, _ in reports.seen)
    assert all(thread is not threading.current_thread() for _, _, thread in reports.seen)
    assert watches.leading == {}


def test_after_a_reconnect_leading_nodes_are_watched_again_and_one_gone_is_a_loss() -> None:
    watches, zk, reports = setup()
    kept, gone = ticket("/e/c-1"), ticket("/e/c-2")
    for mine in (kept, gone):
        zk.nodes.add(mine.key)
        lead(watches, zk, mine)
    zk.nodes.discard(gone.key)  # deleted while we were disconnected
    watches.state_changed(KazooState.SUSPENDED)
    watches.state_changed(KazooState.CONNECTED)
    assert [t for t, _, _ in reports.settled()] == [gone]
    assert len(zk.watches[kept.key]) == 2  # armed again after the reconnect
    assert list(watches.leading) == [kept.key]


def test_report_gone_catches_a_held_ticket_no_longer_leading_and_retain_drops_silently() -> None:
    watches, zk, reports = setup()
    old, current = ticket("/e/c-1", session=1), ticket("/e/c-2", session=2)
    for mine in (old, current):
        zk.nodes.add(mine.key)
        lead(watches, zk, mine)
    watches.retain(2)  # a new session: nodes of the old one are not ours any more
    assert list(watches.leading) == [current.key]
    watches.report_gone([old, current])
    assert [t for t, _, _ in reports.settled()] == [old]


class Uniterable(frozenset[ZooKeeperTicket]):
    """A held set that may be asked about a ticket, never walked."""

    def __iter__(self) -> Any:
        raise AssertionError("report_gone walked every held ticket")


def test_report_gone_looks_at_losses_only_and_catches_one_before_it_was_held() -> None:
    watches, zk, reports = setup()
    crowd = [ticket(f"/e/c-{i}") for i in range(1000)]
    for mine in crowd:
        zk.nodes.add(mine.key)
        lead(watches, zk, mine)
    watches.report_gone(Uniterable(crowd))  # every one still leading: nothing to walk
    early = crowd[0]
    # Its node is seen deleted before the core marked it won: that report is dropped
    # by the core; the renewal after it is held reports it again, while it stays held.
    zk.watches[early.key][0](event(EventType.DELETED, early.key))
    assert [t for t, _, _ in reports.settled()] == [early]
    watches.report_gone(Uniterable(crowd[1:]))  # not held yet: kept, not reported
    watches.report_gone(Uniterable(crowd))
    watches.report_gone(Uniterable(crowd))
    assert [t for t, _, _ in reports.settled()] == [early, early, early]
    watches.report_gone(Uniterable(crowd[1:]))  # the core applied it: forgotten
    watches.report_gone(Uniterable(crowd))
    assert len(reports.settled()) == 3
    withdrawn = crowd[1]
    zk.watches[withdrawn.key][0](event(EventType.DELETED, withdrawn.key))
    withdrawn.withdrawn = True
    watches.report_gone(Uniterable(crowd))
    assert [t for t, _, _ in reports.settled()][3:] == [withdrawn]  # the watch's own


def test_the_own_watch_is_armed_once_per_connection() -> None:
    watches, zk, _ = setup()
    mine = ticket()
    zk.nodes.add(mine.key)
    assert watches.needs_arming(mine)
    watches.arm_own_async(zk, mine)  # type: ignore[arg-type]
    assert not watches.needs_arming(mine)  # a wake-up step sends no exists
    watches.state_changed(KazooState.SUSPENDED)  # kazoo dropped every watch
    assert watches.needs_arming(mine)
    watches.arm_own_async(zk, mine)  # type: ignore[arg-type]
    zk.watches[mine.key][-1](event(EventType.CHANGED))  # a fired watch is spent
    assert watches.needs_arming(mine)


def test_a_waiters_node_deleted_wakes_it_and_is_seen_gone_but_not_reported() -> None:
    watches, zk, reports = setup()
    mine = ticket()
    zk.nodes.add(mine.key)
    with watches.armed(mine.election) as signal:
        watches.arm_own_async(zk, mine)  # type: ignore[arg-type]
        zk.watches[mine.key][0](event(EventType.DELETED))
        assert signal.wait(0)
    assert watches.seen_gone(mine)
    assert reports.settled() == []
    watches.withdrawn(mine)
    assert not watches.seen_gone(mine)


def test_our_own_delete_after_withdrawing_records_nothing() -> None:
    watches, zk, reports = setup()
    mine = ticket()
    zk.nodes.add(mine.key)
    lead(watches, zk, mine)
    watches.withdrawn(mine)
    zk.watches[mine.key][0](event(EventType.DELETED))
    assert not watches.seen_gone(mine)
    assert reports.settled() == []


def test_what_is_parked_on_a_predecessor_runs_once_before_the_signal() -> None:
    watches, _, _ = setup()
    mine = ticket("/e/c-2")
    order: list[str] = []
    watches.park(mine, "/e/c-1", lambda: order.append("read"))
    watches.watch("e")(event(EventType.CHANGED, "/e/c-1"))  # not a deletion
    watches.watch("e")(event(EventType.DELETED, "/e/c-0"))  # another node
    assert order == []
    with watches.armed("e") as signal:
        watches.park(mine, "/e/c-1", lambda: order.append(f"read, fired={signal.wait(0)}"))
        watches.watch("e")(event(EventType.DELETED, "/e/c-1"))
        watches.watch("e")(event(EventType.DELETED, "/e/c-1"))
        assert order == ["read, fired=False"] and signal.wait(0)
    watches.park(mine, "/e/c-1", lambda: order.append("again"))
    watches.withdrawn(mine)
    watches.watch("e")(event(EventType.DELETED, "/e/c-1"))
    assert order == ["read, fired=False"]
