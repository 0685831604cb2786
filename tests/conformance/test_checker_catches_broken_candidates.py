"""Proving the suite can fail: deliberately broken candidates on a real backend must be
caught by the history checker. These tests pass only when the violation is detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.proxy import Proxy
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateGroup

pytestmark = pytest.mark.conformance


def test_a_leader_that_keeps_acting_after_its_deadline_is_caught_as_s1(
    target: Target,
) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("oblivious"), target.workdir) as group:
        oblivious = group.spawn(ttl=ttl, broken="ignore-deadline")
        oblivious.wait_for("elected", timeout=60)
        honest = group.spawn(ttl=ttl)
        honest.wait_for("started", timeout=60)
        oblivious.pause()
        honest.wait_for("elected", timeout=target.profile.failover_bound + 30)
        mark = len(oblivious.events)
        oblivious.resume()
        oblivious.wait_for("valid", after=mark)
        report = group.check(save=False)
    assert any(v.startswith("S1") for v in report.violations), report.summary()


def test_a_store_that_reuses_tokens_is_caught_as_s2(target: Target) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("reuse"), target.workdir) as group:
        members = [group.spawn(ttl=ttl, hold=0.1, broken="token-reuse") for _ in range(2)]
        for member in members:
            member.wait_for("resigned", timeout=60)
        report = group.check(save=False)
    assert any(v.startswith("S2") and "strictly increase" in v for v in report.violations), (
        report.summary()
    )


@pytest.mark.redis
@pytest.mark.slow
def test_redis_without_its_quorum_guard_elects_both_sides_of_a_partition(
    lab: LabFactory, tmp_path: Path
) -> None:
    cluster = lab.start("redis", nodes=3)
    a_side = [Proxy(("127.0.0.1", n.client_port)) for n in cluster.nodes]
    b_side = Proxy(("127.0.0.1", cluster.nodes[0].client_port))
    direct = [n.client_address for n in cluster.nodes]
    try:
        a_side[1].cut()
        a_side[2].cut()  # A reaches instance 0 only ...
        b_side.cut()  # ... and B reaches instances 1 and 2 only
        with CandidateGroup("", "broken/no-quorum", tmp_path) as group:
            group.backend = "redis://" + ",".join(p.address for p in a_side)
            a = group.spawn(ttl=1.0, broken="majority-of-one", name="a")
            a.wait_for("elected", timeout=30)
            group.backend = f"redis://{b_side.address},{direct[1]},{direct[2]}"
            b = group.spawn(ttl=1.0, broken="majority-of-one", name="b")
            b.wait_for("elected", timeout=30)
            a.wait_for("valid", after=len(a.events))
            report = group.check(save=False)
    finally:
        for proxy in (*a_side, b_side):
            proxy.close()
    assert any(v.startswith("S1") for v in report.violations), report.summary()
