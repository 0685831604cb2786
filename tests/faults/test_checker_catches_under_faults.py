"""The history checker catches what the new faults expose in the deliberately broken
configurations of tenure.conformance.suite.broken -- under real kernel partitions, not
proxies: Redis without its quorum guard (one instance of three enough) with candidates
on both sides of a minority | majority split leads twice (S1); a candidate that acts
after its deadline, cut from every etcd member by nftables, overlaps its successor (S1).
Each has a control: the honest configuration under the same fault has no violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.faults.candidates import spawn
from tenure.conformance.faults.lab import NetLab
from tenure.conformance.suite.backends import PROFILES
from tenure.conformance.suite.harness import CandidateGroup

from .conftest import NetLabs

pytestmark = [pytest.mark.faults, pytest.mark.chaos]


def _sides(net: NetLab) -> tuple[list[str], list[str]]:
    for side in ("ca", "cb"):
        if side not in net.sandbox.namespaces:
            net.add_client(side)
    return (net.sandbox.namespaces["ca"].prefix, net.sandbox.namespaces["cb"].prefix)


@pytest.mark.redis
@pytest.mark.parametrize("broken", [True, False], ids=["majority-of-one", "quorum-guard"])
def test_redis_split_both_sides_lead_only_without_the_quorum_guard(
    netlabs: NetLabs, tmp_path: Path, broken: bool
) -> None:
    net = netlabs.get("redis")
    a_side, b_side = _sides(net)
    ttl = PROFILES["redis"].ttl
    one, *two = net.labels
    net.faults.partition([one, "ca"], [*two, "cb"])
    try:
        with CandidateGroup(net.cluster.url, f"split-{broken}", tmp_path) as group:
            mode = "majority-of-one" if broken else None
            a = spawn(group, ttl=ttl, hold=4 * ttl, netns=a_side, broken=mode, name="a")
            b = spawn(group, ttl=ttl, hold=4 * ttl, netns=b_side, broken=mode, name="b")
            b.wait_for("elected", timeout=30)
            if broken:
                a.wait_for("elected", timeout=30)
            else:
                b.wait_for("resign", timeout=30)  # A had the whole hold to lead: it never can
                assert not a.has("elected"), "a minority side led with the quorum guard on"
            report = group.check(save=not broken)
    finally:
        net.faults.heal()
    if broken:
        assert any(v.startswith("S1") for v in report.violations), report.summary()
    else:
        assert report.ok and report.intervals, report.summary()


@pytest.mark.etcd
@pytest.mark.parametrize("broken", [True, False], ids=["ignore-deadline", "honest"])
def test_a_leader_cut_from_every_etcd_member_acting_after_its_deadline_is_caught(
    netlabs: NetLabs, tmp_path: Path, broken: bool
) -> None:
    net = netlabs.get("etcd")
    a_side, b_side = _sides(net)
    ttl = PROFILES["etcd"].ttl
    with CandidateGroup(net.cluster.url, f"cut-{broken}", tmp_path) as group:
        a = spawn(group, ttl=ttl, hold=30, netns=a_side, name="a",
                  broken="ignore-deadline" if broken else None)
        a.wait_for("elected", timeout=30)
        net.faults.isolate("ca", net.labels)
        try:
            b = spawn(group, ttl=ttl, hold=ttl, netns=b_side, name="b")
            b.wait_for("elected", timeout=10 * ttl)
            b.wait_for("resign", timeout=10 * ttl)
        finally:
            net.faults.heal()
        report = group.check(save=not broken)
    if broken:
        assert any(v.startswith("S1") for v in report.violations), report.summary()
    else:
        assert report.ok, report.summary()
        assert a.has("lost"), "the honest leader cut off never reported its loss"
