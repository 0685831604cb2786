"""Shared pieces of the kernel-fault tests: namespaced lab clusters kept for a whole
module (cluster starts dominate the cost), and one seeded rotation of every fault class
per module whose report the per-class tests read.

TENURE_FAULTS_SEED reproduces a run (default 19: CI runs the same schedule each time;
the systems' answers still differ run to run, as timing does)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenure.conformance.faults.lab import NetLab
from tenure.conformance.lab.fixtures import attach_cluster
from tenure.conformance.suite.backends import PROFILES, Target
from tenure.conformance.suite.chaos import ChaosConfig, ChaosReport, run_chaos

SEED = int(os.environ.get("TENURE_FAULTS_SEED", "19"))


class NetLabs:
    """Starts :class:`NetLab` clusters for one module; closes them after it."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.labs: list[NetLab] = []

    def start(self, backend: str, nodes: int = 3, **options: object) -> NetLab:
        net = NetLab(backend, nodes, **options)
        self.labs.append(net)
        attach_cluster(self.request, net.cluster)
        return net

    def get(self, backend: str, nodes: int = 3) -> NetLab:
        """The module's cluster of ``backend`` (started on first use; rules healed)."""
        for net in self.labs:
            if net.backend == backend and len(net.cluster.nodes) == nodes:
                net.faults.heal()
                return net
        return self.start(backend, nodes)

    def close(self) -> None:
        for net in self.labs:
            net.close()


@pytest.fixture(scope="module")
def netlabs(request: pytest.FixtureRequest) -> Iterator[NetLabs]:
    labs = NetLabs(request)
    try:
        yield labs
    finally:
        labs.close()


def target_of(net: NetLab, workdir: Path) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    return Target(PROFILES[net.backend], net.cluster.url, net.cluster, workdir)


def rotation(net: NetLab, workdir: Path, kinds: tuple[str, ...],
             duration: float = 4.0) -> ChaosReport:
    """One seeded chaos run that injects each of ``kinds`` at least once."""
    target = target_of(net, workdir)
    config = ChaosConfig(seed=SEED, duration=duration, candidates=3, faults=kinds,
                         rotate=True, brief=True)
    report = run_chaos(target, config, workdir / "chaos")
    print(report.summary())
    for entry in report.schedule:
        print(f"  {entry['t']:6.1f}s {entry['fault']}: {entry.get('evidence', '')}")
    print(f"  worst failover per class: {report.worst_failover}")
    return report


def assert_class(report: ChaosReport, kind: str) -> None:
    """The class was injected, its effect was observed, and the history holds."""
    entries = [e for e in report.schedule if e["fault"] == kind]
    assert entries, f"{kind} never injected: {report.summary()}"
    for entry in entries:
        assert entry.get("observed", True), f"{kind}: {entry['evidence']}"
    assert report.check is not None and report.check.ok, report.summary()
    assert report.check.intervals, "nobody led during the run"
