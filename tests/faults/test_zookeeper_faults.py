"""ZooKeeper x3, every server in its own network namespace (the lab's per-pair peer
proxies dropped): partitions (an isolated server, minority | majority with candidates on
both sides, a bridge server), one-way and random loss, SIGSTOP of the ZooKeeper leader
past the TTL (a new leader is elected), kill/restart of the leader, candidates' wall
clocks stepped. One seeded rotation; each test shows its class happened and the history
held S1/S2/S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.faults.lab import NetLab
from tenure.conformance.suite.chaos import ChaosReport

from .conftest import NetLabs, assert_class, rotation

pytestmark = [pytest.mark.faults, pytest.mark.zookeeper, pytest.mark.chaos]

KINDS = ("partition-isolate", "partition-split", "partition-bridge", "loss-one-way",
         "loss-link", "store-pause", "leader-kill", "clock-step")


@pytest.fixture(scope="module")
def net(netlabs: NetLabs) -> NetLab:
    return netlabs.start("zookeeper", 3)


@pytest.fixture(scope="module")
def report(net: NetLab, tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    return rotation(net, Path(tmp_path_factory.mktemp("zookeeper-faults")), KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_fault_class_happens_and_safety_holds(report: ChaosReport, kind: str) -> None:
    assert_class(report, kind)
