"""No herd and one session: a leader change wakes O(1) of 200 waiters, and one client
holding 1,000 elections renews one session about three times per TTL."""

from __future__ import annotations

import threading
import time

import pytest

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore, ZooKeeperTicket
from tenure.campaign import wait_for
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.zookeeper import four_letter
from tenure.store import Won

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


def mntr(cluster: Cluster) -> dict[str, str]:
    """The server's ``mntr`` counters (1-node cluster)."""
    host, port = cluster.nodes[0].client_address.split(":")
    lines = four_letter((host, int(port)), "mntr").splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def test_a_leader_change_among_200_waiters_notifies_o1_of_them(
    zookeeper_cluster: Cluster,
) -> None:
    waiters = 200
    changes = 5
    backend, _ = parse_backend_url(zookeeper_cluster.url)
    election = f"zk/herd/{time.monotonic_ns()}"
    stores = [ZooKeeperStore.from_url(backend) for _ in range(waiters)]
    won = [threading.Event() for _ in range(waiters)]
    cancel = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for s in stores:
            s.open_session(4.0)  # each candidate has its own session, as processes would
        tickets = [s.enqueue(election, f"c{i}", b"") for i, s in enumerate(stores)]

        def campaign(i: int, ticket: ZooKeeperTicket) -> None:
            # The core's campaign loop, without its session keeper: step, wait, repeat.
            while not cancel.is_set():
                step = stores[i].try_lead(ticket)
                if isinstance(step, Won):
                    won[i].set()
                    return
                with step.signal:
                    wait_for(step, None, cancel)

        threads += [threading.Thread(target=campaign, args=(i, t), daemon=True)
                   for i, t in enumerate(tickets)]
        for thread in threads:
            thread.start()
        assert won[0].wait(30)
        # every waiter has armed its watch once its first look is done
        for s, t in zip(stores[1:], tickets[1:], strict=True):
            assert s.leader(election) is not None and t.order > tickets[0].order
        before = sum(s.notifications for s in stores)
        for i in range(changes):
            stores[i].withdraw(tickets[i])
            assert won[i + 1].wait(30), f"candidate {i + 1} did not take over"
        # A read round trip on every session: any notification the changes caused has
        # been delivered to its session before this answer.
        for s in stores:
            s.leader(election)
        notified = sum(s.notifications for s in stores) - before
        assert not any(w.is_set() for w in won[changes + 1:])  # order kept, nobody jumped
    finally:
        cancel.set()
        for thread in threads:
            thread.join(timeout=10)
        for s in stores:
            s.close_session()
            s.close()
    per_change = notified / changes
    print(f"\nwatch notifications per leader change with {waiters} waiters: {per_change:g}")
    # The successor's predecessor watch, plus the old leader's watch on its own node.
    assert per_change <= 2, notified


def test_one_client_with_1000_elections_keeps_one_session_renewed_3_times_per_ttl(
    lab: LabFactory,
) -> None:
    cluster = lab.start("zookeeper")  # its own server, so its counters are ours alone
    ttl = 2.0
    with tenure.connect(cluster.url, ttl=ttl) as client:
        leads = [client.election(f"zk/many/{i}").campaign(timeout=30) for i in range(1000)]
        session = client.store._session_id  # type: ignore[attr-defined]
        counters = mntr(cluster)
        assert counters["zk_ephemerals_count"] == "1000"
        assert int(counters["zk_num_alive_connections"]) <= 2  # ours + this mntr
        renewals, sent = client.keeper.renewals, client.store.renewal_requests  # type: ignore[attr-defined]
        packets = int(counters["zk_packets_received"])
        began = time.monotonic()
        wait_until(lambda: client.keeper.renewals >= renewals + 9, 30, "9 renewals")
        elapsed = time.monotonic() - began
        packets = int(mntr(cluster)["zk_packets_received"]) - packets
        rounds = client.store.renewal_requests - sent  # type: ignore[attr-defined]
        assert client.store._session_id == session  # type: ignore[attr-defined]
        assert not any(lead.lost for lead in leads)
    per_ttl = ttl / elapsed
    print(f"\n1000 elections, TTL {ttl:g} s: {rounds * per_ttl:.1f} renewal round trips and "
          f"{packets * per_ttl:.1f} packets received by the server per TTL")
    assert rounds * per_ttl <= 4.5
    # renewals plus kazoo's idle pings; a per-election renewal would be thousands
    assert packets * per_ttl <= 10
