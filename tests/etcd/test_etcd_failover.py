"""etcd members failing under a client: leadership survives the loss of the member the
client talks to, and observers see every leader in token order across member kills,
cut connections and compaction."""

from __future__ import annotations

import threading
import time

import pyetcd
import pytest

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


def node_index(cluster: Cluster, client: tenure.Client) -> int:
    """The index of the member ``client`` talks to."""
    assert isinstance(client.store, EtcdStore)
    member = client.store.member
    return next(i for i, n in enumerate(cluster.nodes) if n.client_address == member)


def wait_seen(seen: list[tenure.LeaderInfo | None], token: int, what: str) -> None:
    wait_until(lambda: bool(seen) and seen[-1] is not None and seen[-1].token == token,
               30, what)


def test_killing_the_member_a_leader_talks_to_keeps_its_leadership(lab: LabFactory) -> None:
    cluster = lab.start("etcd", nodes=3)
    ttl = 4.0  # reconnecting (and an etcd leader election, if it hit the etcd leader) < TTL
    losses: list[str] = []
    with tenure.connect(cluster.url, ttl=ttl) as client, \
            tenure.connect(cluster.url, ttl=ttl) as other:
        lead = client.election("survive").campaign(
            timeout=30, on_lost=lambda _lead, reason: losses.append(reason))
        victim = node_index(cluster, client)
        renewals = client.keeper.renewals
        cluster.nodes[victim].kill()
        # Three renewals after the kill prove the session is kept through another member.
        wait_until(lambda: client.keeper.renewals >= renewals + 3, 6 * ttl,
                   "renewals through a surviving member")
        assert node_index(cluster, client) != victim
        lead.ensure()
        lead.guarded_write("survive/data", b"after the kill")
        assert other.read("survive/data") == b"after the kill"
        leader = other.election("survive").leader()
        assert leader is not None and leader.token == lead.token
        lead.resign()
    assert losses == []


def test_observers_see_every_leader_in_token_order_across_member_kills(
    lab: LabFactory,
) -> None:
    cluster = lab.start("etcd", nodes=3)
    seen: list[tenure.LeaderInfo | None] = []
    with tenure.connect(cluster.url, ttl=4) as watcher, \
            tenure.connect(cluster.url, ttl=4) as a, tenure.connect(cluster.url, ttl=4) as b:
        observer = watcher.election("observed").on_change(seen.append)
        try:
            tokens = []
            for round_ in range(6):
                if round_ == 3:  # the member the observer watches through dies
                    cluster.nodes[node_index(cluster, watcher)].kill()
                lead = (a, b)[round_ % 2].election("observed").campaign(timeout=60)
                tokens.append(lead.token)
                wait_seen(seen, lead.token, f"the observer to see token {lead.token}")
                lead.resign()
        finally:
            observer.stop()
    observed = [info.token for info in seen if info is not None]
    assert observed == sorted(observed), observed
    assert tokens == sorted(set(observed)), (tokens, observed)


def test_an_observer_cut_from_etcd_sees_the_latest_leader_after_healing_and_compaction(
    etcd_cluster: Cluster,
) -> None:
    name = f"reconnect/{time.monotonic_ns()}"
    proxy = etcd_cluster.proxy()
    seen: list[tenure.LeaderInfo | None] = []
    with tenure.connect(proxy.url, ttl=2) as watcher, \
            tenure.connect(etcd_cluster.url, ttl=2) as a, \
            tenure.connect(etcd_cluster.url, ttl=2) as b:
        observer = watcher.election(name).on_change(seen.append)
        try:
            first = a.election(name).campaign(timeout=30)
            wait_seen(seen, first.token, "the observer to see the first leader")
            proxy.cut()
            first.resign()
            second = b.election(name).campaign(timeout=30)  # made while the observer is cut
            proxy.heal()
            wait_seen(seen, second.token, "the observer to see the leader chosen during the cut")

            # Compact the history; a watch resumed from before it breaks at once (it does
            # not hang) and the observer re-reads and carries on.
            host, port = etcd_cluster.nodes[0].client_address.rsplit(":", 1)
            admin = pyetcd.MultiEndpointEtcd3Client(
                [pyetcd.Endpoint(host, int(port), secure=False)], timeout=10)
            admin.put("compaction-marker", "x")
            revision = admin.get("compaction-marker")[1].mod_revision
            admin.compact(revision, physical=True)
            admin.close()
            store = watcher.store
            assert isinstance(store, EtcdStore)
            notified = store.watch_notifications
            began = time.monotonic()
            with store._signal(b"compaction-marker", revision - 1) as signal:
                fired = signal.wait(10)
            assert (fired, time.monotonic() - began < 5) == (True, True)
            assert store.watch_notifications == notified  # it broke: no event delivered
            second.resign()
            third = a.election(name).campaign(timeout=30)
            wait_seen(seen, third.token, "the observer to see the leader after compaction")
            third.resign()
        finally:
            observer.stop()
    observed = [info.token for info in seen if info is not None]
    assert observed == sorted(observed)
    assert {first.token, second.token, third.token} <= set(observed)


def test_an_operator_deleting_the_leaders_key_ends_its_leadership_and_the_next_leads(
    etcd_cluster: Cluster,
) -> None:
    name = f"deleted/{time.monotonic_ns()}"
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(_lead: tenure.Leadership, reason: str) -> None:
        reasons.append(reason)
        lost.set()

    with tenure.connect(etcd_cluster.url, ttl=2) as a, \
            tenure.connect(etcd_cluster.url, ttl=2) as b:
        lead = a.election(name).campaign(timeout=30, on_lost=on_lost)
        successor: list[tenure.Leadership] = []
        waiter = threading.Thread(
            target=lambda: successor.append(b.election(name).campaign(timeout=30)))
        waiter.start()
        store = b.store
        assert isinstance(store, EtcdStore)
        wait_until(lambda: store.watches_created >= 1, 30, "the waiter to watch the leader")
        host, port = etcd_cluster.nodes[0].client_address.rsplit(":", 1)
        admin = pyetcd.MultiEndpointEtcd3Client(
            [pyetcd.Endpoint(host, int(port), secure=False)], timeout=10)
        assert admin.delete(lead.ticket.key)
        admin.close()
        assert lost.wait(10), "on_lost did not fire"
        waiter.join(timeout=30)
        with pytest.raises(tenure.LeadershipLost, match="deleted"):
            lead.ensure()
        assert successor and successor[0].token > lead.token
        successor[0].resign()
    assert len(reasons) == 1 and "deleted" in reasons[0]


def test_an_observer_on_an_isolated_member_sees_the_leader_elected_by_the_majority(
    lab: LabFactory,
) -> None:
    # An observer makes no calls of its own while it waits, so no failed call moves it
    # off the member; its watch stream stays open but the isolated member gets no new
    # events. The stream must end (the watch requires a leader) and the observer must
    # read again through a member of the majority.
    cluster = lab.start("etcd", nodes=3)
    seen: list[tenure.LeaderInfo | None] = []
    with tenure.connect(cluster.url, ttl=4) as watcher, \
            tenure.connect(cluster.url, ttl=4) as candidate:
        observer = watcher.election("isolated").on_change(seen.append)
        try:
            wait_until(lambda: seen == [None], 30, "the observer to see no leader")
            with cluster.isolated_node(node_index(cluster, watcher)):
                lead = candidate.election("isolated").campaign(timeout=60)
                wait_seen(seen, lead.token, "the observer to see the leader elected meanwhile")
            lead.resign()
        finally:
            observer.stop()
