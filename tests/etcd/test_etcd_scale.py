"""etcd at scale: a leader change wakes one waiter, not all of them (no herd), and one
client holding 1,000 elections keeps ONE lease renewed by ~3 keepalives per TTL."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator

import pyetcd
import pytest
from pyetcd import etcdrpc

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster, wait_until

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

WAITERS = 200
ELECTIONS = 1000


def etcd_of(client: tenure.Client) -> EtcdStore:
    assert isinstance(client.store, EtcdStore)
    return client.store


@pytest.fixture
def clients(etcd_cluster: Cluster) -> Iterator[list[tenure.Client]]:
    made: list[tenure.Client] = []
    yield made
    for client in made:
        client.close()


def test_a_leader_change_among_200_waiters_notifies_one_waiter_not_all(
    etcd_cluster: Cluster, clients: list[tenure.Client]
) -> None:
    name = f"herd/{time.monotonic_ns()}"
    clients.extend(tenure.connect(etcd_cluster.url, ttl=10) for _ in range(WAITERS + 1))
    first = clients[0].election(name).campaign(timeout=30)
    won: queue.Queue[tenure.Leadership] = queue.Queue()
    stop = threading.Event()

    def wait_in_line(client: tenure.Client) -> None:
        with contextlib.suppress(tenure.CampaignCancelled):
            won.put(client.election(name).campaign(cancel=stop))

    threads = [threading.Thread(target=wait_in_line, args=(c,)) for c in clients[1:]]
    stores = [etcd_of(c) for c in clients]
    try:
        for thread in threads:
            thread.start()
        # Every waiter is queued and watching its predecessor.
        wait_until(lambda: sum(s.watches_created for s in stores) >= WAITERS, 120,
                   f"{WAITERS} waiters to watch their predecessors")
        per_change = []
        leader = first
        for _ in range(5):
            before = sum(s.watch_notifications for s in stores)
            leader.resign()
            leader = won.get(timeout=30)
            after = sum(s.watch_notifications for s in stores)
            per_change.append(after - before)
        print(f"\nwatch notifications per leader change with {WAITERS} waiters: {per_change}")
        assert all(n <= 2 for n in per_change), per_change
        assert leader.token > first.token
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def lease_keys(etcd_cluster: Cluster, lease: int) -> tuple[int, int]:
    """(granted TTL, number of keys) of ``lease``, asked of the server."""
    host, port = etcd_cluster.nodes[0].client_address.rsplit(":", 1)
    admin = pyetcd.MultiEndpointEtcd3Client(
        [pyetcd.Endpoint(host, int(port), secure=False)], timeout=10
    )
    try:
        info = admin.leasestub.LeaseTimeToLive(
            etcdrpc.LeaseTimeToLiveRequest(ID=lease, keys=True), 10
        )
        return int(info.grantedTTL), len(info.keys)
    finally:
        admin.close()


def test_one_client_holding_1000_elections_keeps_one_lease_with_3_keepalives_per_ttl(
    etcd_cluster: Cluster, clients: list[tenure.Client]
) -> None:
    ttl = 2.0
    many, one = (tenure.connect(etcd_cluster.url, ttl=ttl) for _ in range(2))
    clients.extend([many, one])
    prefix = f"lease/{time.monotonic_ns()}"
    held = [many.election(f"{prefix}/{i}").campaign(timeout=30) for i in range(ELECTIONS)]
    single = one.election(f"{prefix}/single").campaign(timeout=30)
    store = etcd_of(many)
    assert lease_keys(etcd_cluster, store._lease) == (2, ELECTIONS)

    window = 4 * ttl  # measuring a rate over a fixed window: the sleep IS the measurement
    start_many, start_one = store.keepalives, etcd_of(one).keepalives
    time.sleep(window)
    per_ttl_many = (store.keepalives - start_many) * ttl / window
    per_ttl_one = (etcd_of(one).keepalives - start_one) * ttl / window
    print(f"\nkeepalives per TTL: {per_ttl_many:.2f} holding {ELECTIONS} elections, "
          f"{per_ttl_one:.2f} holding one")
    assert 2 <= per_ttl_many <= 4, per_ttl_many
    assert abs(per_ttl_many - per_ttl_one) <= 0.75
    assert not any(lead.lost for lead in held) and not single.lost
    assert lease_keys(etcd_cluster, store._lease) == (2, ELECTIONS)
