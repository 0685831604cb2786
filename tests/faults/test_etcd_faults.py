"""etcd x3, every member in its own network namespace: partitions (isolated member,
minority | majority with candidates on both sides, a bridge member), one-way and random
loss, SIGSTOP of the store leader past the TTL, kill/restart of the store leader, a
member removed and re-added, candidates' wall clocks stepped. One seeded rotation of
every class; each test shows its class happened and the history held S1/S2/S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.faults.classes import CLASSES
from tenure.conformance.faults.lab import NetLab
from tenure.conformance.suite.chaos import ChaosReport

from .conftest import NetLabs, assert_class, rotation

pytestmark = [pytest.mark.faults, pytest.mark.etcd, pytest.mark.chaos]

KINDS = ("partition-isolate", "partition-split", "partition-bridge", "loss-one-way",
         "loss-link", "store-pause", "leader-kill", "member-readd", "clock-step")


@pytest.fixture(scope="module")
def net(netlabs: NetLabs) -> NetLab:
    return netlabs.start("etcd", 3)


@pytest.fixture(scope="module")
def report(net: NetLab, tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    return rotation(net, Path(tmp_path_factory.mktemp("etcd-faults")), KINDS)


def test_an_isolated_member_is_reported_unreachable_and_loses_the_store_leadership(
    net: NetLab,
) -> None:
    leader = net.store_leader()
    assert leader is not None
    peers = [i for i in range(3) if i != leader]
    net.faults.isolate(net.labels[leader], net.labels)
    try:
        assert "drop" in net.faults.rules(net.labels[leader])
        from tenure.conformance.lab.cluster import wait_until

        wait_until(lambda: net.sees_peer(peers[0], leader) is False, 15,
                   f"{net.labels[leader]} to be reported unreachable")
        wait_until(lambda: net.store_leader() in peers, 15, "a new store leader among the peers")
    finally:
        net.faults.heal()
    net.cluster.wait_serving()


@pytest.mark.parametrize("kind", KINDS)
def test_fault_class_happens_and_safety_holds(report: ChaosReport, kind: str) -> None:
    assert kind in CLASSES
    assert_class(report, kind)
