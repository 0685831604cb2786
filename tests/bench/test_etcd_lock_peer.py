"""The etcd-sdk-python ``Lock`` peer of ``tenure bench`` (issue 14): it is registered for
etcd with its loss rows reported unsupported (with the reason), and it hands over and
fails over between worker processes on a lab etcd. Nothing here asserts a timing: only
that each sample exists, and that a crash failover waited for the dead holder's lease
(at least TTL minus one refresh interval, TTL/3)."""

from __future__ import annotations

import pytest

from tenure.conformance.benchmarks import failover, handover
from tenure.conformance.benchmarks.systems import ETCD_LOCK_NO_LOSS, store_hosts, systems_for
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]

TTL = 2.0


def test_the_etcd_lock_peer_is_an_etcd_system_without_loss_rows(etcd_cluster: Cluster) -> None:
    found = {s.tool: s for s in systems_for("etcd", etcd_cluster.url)}
    lock = found["etcd-lock"]
    assert lock.url == f"etcd-lock://{store_hosts(etcd_cluster.url).split(',')[0]}"
    assert lock.why_not("handover") is None and lock.why_not("idle") is None
    assert lock.why_not("detect-cut") == ETCD_LOCK_NO_LOSS
    assert "etcd-lock" not in {s.tool for s in systems_for("zookeeper", "zookeeper://h:1")}


def test_the_etcd_lock_peer_hands_over_and_fails_over(etcd_cluster: Cluster) -> None:
    lock = {s.tool: s for s in systems_for("etcd", etcd_cluster.url)}["etcd-lock"]
    gaps = handover.measure("etcd-lock", lock.url, "smoke-handover", TTL, changes=3)
    assert len(gaps) == 3 and all(gap > 0 for gap in gaps), gaps
    times = failover.measure("etcd-lock", lock.url, "smoke-failover", TTL, kills=1)
    # The waiter can only win once the killed holder's lease expired: its last refresh
    # was at most TTL/3 before the kill.
    assert len(times) == 1 and times[0] >= TTL * 2 / 3 * 0.95, times
