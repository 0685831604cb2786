"""Redis x3 (independent instances), each in its own network namespace, candidates in
client namespaces A and B and on the host: the candidates cut from one instance, A with
one instance | B with two, a bridge instance both sides reach, one-way and random loss,
SIGSTOP and kill/restart of an instance, an instance restarted without its data while
the others keep theirs. One seeded rotation of every class; each test shows its class
happened and the history held S1/S2/S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.faults.lab import NetLab
from tenure.conformance.suite.chaos import ChaosReport

from .conftest import NetLabs, assert_class, rotation

pytestmark = [pytest.mark.faults, pytest.mark.redis, pytest.mark.chaos]

KINDS = ("partition-isolate", "partition-split", "partition-bridge", "loss-one-way",
         "loss-link", "store-pause", "leader-kill", "redis-wipe")


@pytest.fixture(scope="module")
def net(netlabs: NetLabs) -> NetLab:
    return netlabs.start("redis", 3)


@pytest.fixture(scope="module")
def report(net: NetLab, tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    return rotation(net, Path(tmp_path_factory.mktemp("redis-faults")), KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_fault_class_happens_and_safety_holds(report: ChaosReport, kind: str) -> None:
    assert_class(report, kind)
