"""Properties under store faults (store backends only): a client cut from its store,
and store nodes killed in a 3-node cluster."""

from __future__ import annotations

import time

import pytest
from tenure.conformance.backends import Target
from tenure.conformance.harness import CandidateGroup, CandidateProcess

pytestmark = [pytest.mark.conformance, pytest.mark.chaos]


def acting_after(members: list[CandidateProcess], moment: float) -> bool:
    return any(
        e["kind"] == "valid" and e["t"] > moment for m in members for e in list(m.events)
    )


def wait_acting_after(members: list[CandidateProcess], moment: float, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not acting_after(members, moment):
        assert time.monotonic() < end, f"no leader acted within {timeout:g} s after {moment}"
        time.sleep(0.05)


@pytest.mark.parametrize("blackhole", [False, True], ids=["refused", "blackholed"])
def test_s4_a_leader_cut_from_its_store_steps_down_by_its_deadline(
    cluster_target: Target, blackhole: bool
) -> None:
    target = cluster_target
    assert target.cluster is not None
    ttl = target.profile.ttl
    proxy = target.cluster.proxy()
    with CandidateGroup(target.url, target.election("cut"), target.workdir) as group:
        group.backend = proxy.url
        leader = group.spawn(ttl=ttl, name="cut-off")
        leader.wait_for("elected", timeout=60)
        group.backend = target.url
        follower = group.spawn(ttl=ttl, name="majority-side")
        follower.wait_for("started", timeout=60)
        last_valid = leader.wait_for("valid")
        proxy.cut(blackhole=blackhole)
        cut_at = time.monotonic()
        lost = leader.wait_for("lost", timeout=ttl + 10)
        follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
        proxy.heal()
        report = group.check()
    deadlines = [e["deadline"] for e in leader.events if e["kind"] in ("valid", "elected")]
    assert lost["t"] <= max(deadlines) + 0.5, (lost, max(deadlines))
    assert lost["t"] - cut_at <= ttl + 0.5
    assert last_valid["t"] < cut_at
    assert report.ok, report.summary()


def test_l3_an_election_keeps_or_regains_a_leader_when_a_store_node_dies(
    cluster_target: Target,
) -> None:
    target = cluster_target
    assert target.cluster is not None
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("node-kill"), target.workdir) as group:
        members = [group.spawn(ttl=ttl) for _ in range(3)]
        members[0].wait_for("elected", timeout=60)
        for index in range(2):  # kill one node, restart it, then the next one
            killed_at = time.monotonic()
            target.cluster.nodes[index].kill()
            # PITFALLS: a store's own failover may stretch expiry; allow for it.
            bound = 3 * target.profile.failover_bound + 30
            wait_acting_after(members, killed_at + ttl, timeout=bound)
            target.cluster.nodes[index].restart()
            target.cluster.wait_serving()
        report = group.check()
    assert report.ok, report.summary()


def test_s4_no_quorum_no_leader(cluster_target: Target) -> None:
    """With two of three store nodes down, nobody is elected, and a leader there
    steps down by its deadline."""
    target = cluster_target
    assert target.cluster is not None
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("no-quorum"), target.workdir) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        target.cluster.nodes[1].kill()
        target.cluster.nodes[2].kill()
        leader.wait_for("lost", timeout=ttl * target.profile.expiry_factor + 30)
        minority_since = time.monotonic()
        time.sleep(2 * ttl * target.profile.expiry_factor + 1)  # observe a quiet window
        elected_in_minority = [
            e for e in follower.events if e["kind"] == "elected" and e["t"] > minority_since
        ]
        report = group.check()
    assert elected_in_minority == []
    assert report.ok, report.summary()
