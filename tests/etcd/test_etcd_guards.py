"""The guard of a won etcd key (a watch reporting its deletion as a loss) is never
given up while the leadership is held: a guard whose watch cannot be created, or whose
stream ends (etcd 3.4 creates a watch from a compacted revision, then cancels it),
reads the key (linearizable) and reports it gone, or re-arms from that read; a failing
read is retried; an error while arming one guard leaves the guard thread arming the next.

Each test holds the guard thread back (its ``_guard`` waits on an event), changes the
store meanwhile (deletes the key, compacts the history past the guard's start
revision), then lets it go. About 1 s each on the lab etcd.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyetcd
import pytest

import tenure
from tenure.adapters.etcd import EtcdStore, EtcdTicket
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.etcd]

TTL = 4.0
BOUND = 15.0  # generous on 2 loaded cores; each event comes in milliseconds


class HeldGuards:
    """Holds back a store's guard thread before each watch creation until released;
    records the start revision of every watch it was asked for."""

    def __init__(self, store: EtcdStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.starts: list[int] = []
        self.made: list[Callable[[], None] | None] = []
        original = store._guard

        def held(ticket: EtcdTicket, start_revision: int) -> Callable[[], None] | None:
            self.starts.append(start_revision)
            self.entered.set()
            self.release.wait(60)
            cancel = original(ticket, start_revision)
            self.made.append(cancel)
            return cancel

        store._guard = held  # type: ignore[method-assign]


@pytest.fixture
def admin(etcd_cluster: Cluster) -> Iterator[Any]:
    host, port = etcd_cluster.nodes[0].client_address.rsplit(":", 1)
    client = pyetcd.MultiEndpointEtcd3Client(
        [pyetcd.Endpoint(host, int(port), secure=False)], timeout=10)
    try:
        yield client
    finally:
        client.close()


def compact(admin: Any) -> int:
    """Compacts the lab etcd's history up to now, past at least one new revision (a
    watch may start AT the compaction revision); returns the compaction revision."""
    admin.put("guard-compaction-marker", "x")
    admin.put("guard-compaction-marker", "y")
    revision = int(admin.get("guard-compaction-marker")[1].mod_revision)
    admin.compact(revision, physical=True)
    return revision


def etcd_store(client: tenure.Client) -> EtcdStore:
    store = client.store
    assert isinstance(store, EtcdStore)
    return store


def won_ticket(lead: tenure.Leadership) -> EtcdTicket:
    ticket = lead.ticket
    assert isinstance(ticket, EtcdTicket)
    return ticket


def given_back(lead: tenure.Leadership, what: str) -> None:
    """Asserts ``lead`` was lost, then waits for the core's background withdrawal to
    have started (closing the client at once could meet that thread not yet started:
    gateway/client.py withdraw_in_background lists it before starting it)."""
    assert lead.wait_lost(BOUND), what
    wait_until(lambda: lead.ticket.withdrawn, BOUND, "the lost entry to be given back")


def name(what: str) -> str:
    return f"guards/{what}/{time.monotonic_ns()}"


def test_a_guard_compacted_away_reports_its_key_found_gone(
        etcd_cluster: Cluster, admin: Any) -> None:
    with tenure.connect(etcd_cluster.url, ttl=TTL) as client:
        held = HeldGuards(etcd_store(client))
        lead = client.election(name("gone")).campaign(timeout=30)
        assert held.entered.wait(BOUND), "the guard thread never armed the win's guard"
        admin.delete(won_ticket(lead).key)
        assert compact(admin) > held.starts[0]  # the guard's watch cannot be created
        held.release.set()
        given_back(lead, "the deleted leader key was never reported")
        assert "deleted from etcd" in lead.lost_reason
        with pytest.raises(tenure.LeadershipLost):
            lead.ensure()


def test_a_guard_whose_history_was_compacted_rearms_from_its_read_and_reports_a_deletion(
        etcd_cluster: Cluster, admin: Any) -> None:
    with tenure.connect(etcd_cluster.url, ttl=TTL) as client:
        held = HeldGuards(etcd_store(client))
        lead = client.election(name("rearm")).campaign(timeout=30)
        assert held.entered.wait(BOUND), "the guard thread never armed the win's guard"
        compacted = compact(admin)  # the key is still there: the guard must re-arm
        assert compacted > held.starts[0]
        held.release.set()
        ticket = won_ticket(lead)
        # etcd creates the watch, then ends it (compacted): the guard reads and re-arms.
        wait_until(lambda: len(held.made) == 2 and ticket.guard is held.made[1]
                   and ticket.guard is not None, BOUND, "the guard to be re-armed")
        assert held.starts[1] > compacted, held.starts
        assert not lead.lost
        lead.ensure()
        admin.delete(ticket.key)
        given_back(lead, "the re-armed guard did not report the deletion")
        assert "deleted from etcd" in lead.lost_reason


def test_a_guard_watch_that_cannot_be_made_reads_the_key_and_rearms_from_the_read(
        etcd_cluster: Cluster, admin: Any) -> None:
    with tenure.connect(etcd_cluster.url, ttl=TTL) as client:
        store = etcd_store(client)
        held = HeldGuards(store)
        real_watch = store._etcd.watch
        refused: list[bytes] = []

        def watch(key: bytes, *args: Any, **kwargs: Any) -> Callable[[], None] | None:
            if not refused:  # the guard's first watch: as after a timeout or failover
                refused.append(key)
                return None
            return real_watch(key, *args, **kwargs)

        store._etcd.watch = watch  # type: ignore[method-assign]
        lead = client.election(name("unmade")).campaign(timeout=30)
        ticket = won_ticket(lead)
        assert held.entered.wait(BOUND), "the guard thread never armed the win's guard"
        written = int(admin.put("guard-unmade-marker", "x").header.revision)
        held.release.set()
        wait_until(lambda: len(held.made) == 2 and ticket.guard is held.made[1]
                   and ticket.guard is not None, BOUND, "the guard to be re-armed")
        assert refused == [ticket.key.encode()]
        assert held.made[0] is None and held.starts[1] > written, held.starts
        admin.delete(ticket.key)
        given_back(lead, "the re-armed guard did not report the deletion")
        assert "deleted from etcd" in lead.lost_reason


def test_a_failing_guard_read_is_retried_until_it_reports_the_loss(
        etcd_cluster: Cluster, admin: Any, caplog: pytest.LogCaptureFixture) -> None:
    with tenure.connect(etcd_cluster.url, ttl=TTL) as client:
        store = etcd_store(client)
        held = HeldGuards(store)
        reads: list[str] = []
        real_range = store._etcd.range

        def failing_range(request: Any, what: str) -> Any:
            if what == "guard read":
                reads.append(what)
                if len(reads) <= 2:
                    raise StoreUnavailable("injected: the guard's read failed")
            return real_range(request, what)

        store._etcd.range = failing_range  # type: ignore[method-assign]
        lead = client.election(name("retry")).campaign(timeout=30)
        assert held.entered.wait(BOUND), "the guard thread never armed the win's guard"
        admin.delete(won_ticket(lead).key)
        compact(admin)
        with caplog.at_level(logging.WARNING, logger="tenure"):
            held.release.set()
            given_back(lead, "the guard gave up after its read failed")
        assert len(reads) == 3, reads
        assert "deleted from etcd" in lead.lost_reason
        unguarded = [r for r in caplog.records if "is unguarded" in r.getMessage()]
        assert len(unguarded) == 2, [r.getMessage() for r in caplog.records]


def test_an_error_arming_one_guard_leaves_the_thread_arming_the_next(
        etcd_cluster: Cluster, caplog: pytest.LogCaptureFixture, admin: Any) -> None:
    with tenure.connect(etcd_cluster.url, ttl=TTL) as client:
        store = etcd_store(client)
        original = store._guard
        broken = name("broken")

        def guard(ticket: EtcdTicket, start_revision: int) -> Callable[[], None] | None:
            if ticket.election == broken:
                raise RuntimeError("injected: arming this guard fails")
            return original(ticket, start_revision)

        store._guard = guard  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="tenure"):
            first = client.election(broken).campaign(timeout=30)
            second = client.election(name("next")).campaign(timeout=30)
            ticket = won_ticket(second)
            wait_until(lambda: ticket.guard is not None, BOUND,
                       "the next guard to be armed after the error")
            admin.delete(ticket.key)
            given_back(second, "the next guard did not report the deletion")
            assert "deleted from etcd" in second.lost_reason
            first.resign()  # ends the broken guard's retries
        logged = [r for r in caplog.records if "arming the guard" in r.getMessage()]
        # With the traceback: the CLI's handler, if a test configured it in this process,
        # moves exc_info into a redacted exc_text.
        assert logged and all(r.exc_info or r.exc_text for r in logged), \
            [r.getMessage() for r in caplog.records]
        assert not first.lost
