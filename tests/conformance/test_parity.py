"""Parity of the one campaign loop: the same calls behave the same on every backend,
1-node and 3-node, because the loop, the timeouts and the loss policy are written once
(tenure.campaign, tenure.leadership) and adapters only make store steps."""

from __future__ import annotations

import threading
import time

import pytest

import tenure
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateGroup
from tenure.leadership import State

pytestmark = pytest.mark.conformance

FAILOVER_SLACK = 1.0
"""The issue's bound: a crashed leader blocks its election for at most TTL + 1 s."""


def connect(target: Target, candidate_id: str) -> tenure.Client:
    return tenure.connect(target.url, ttl=target.profile.ttl, candidate_id=candidate_id)


def timeout_zero_is_exactly_one_try(target: Target) -> None:
    name = target.election("timeout-zero")
    with connect(target, "first") as a, connect(target, "second") as b:
        lead = a.election(name).campaign(timeout=0)
        assert lead.state is State.HELD
        started = time.monotonic()
        with pytest.raises(tenure.CampaignTimeout, match=r"within 0 s"):
            b.election(name).campaign(timeout=0)
        assert time.monotonic() - started < 1.0, "timeout=0 waited instead of trying once"
        assert [c.candidate_id for c in a.election(name).contenders()] == ["first"], (
            "the failed try left its entry behind"
        )
        lead.resign()
        assert b.election(name).campaign(timeout=0).token > lead.token


def refused_write_is_a_loss(target: Target) -> None:
    name = target.election("refused")
    with connect(target, "first") as a, connect(target, "second") as b:
        lost: list[str] = []
        fired = threading.Event()

        def on_lost(_lead: tenure.Leadership, reason: str) -> None:
            lost.append(reason)
            fired.set()

        lead = a.election(name).campaign(timeout=30, on_lost=on_lost)
        # An operator takes the key away behind the core's back (the store's own
        # removal, not a resign): the next conditional write must be refused...
        a.store.withdraw(lead.ticket)
        with pytest.raises(tenure.NotLeader):
            lead.guarded_write(f"{name}/data", b"late")
        # ...and that refusal (or the adapter's own watch, whichever came first) ended
        # the leadership as LOST, at once, with on_lost fired exactly once.
        assert lead.state is State.LOST
        assert fired.wait(5)
        with pytest.raises(tenure.LeadershipLost):
            lead.ensure()
        with pytest.raises(tenure.NotLeader):
            lead.proclaim("again")
        successor = b.election(name).campaign(timeout=30)
        assert successor.token > lead.token
        successor.guarded_write(f"{name}/data", b"fresh")
        assert b.read(f"{name}/data") == b"fresh"
        assert len(lost) == 1, lost


def resign_is_not_a_loss(target: Target) -> None:
    name = target.election("resign")
    with connect(target, "first") as a:
        calls: list[str] = []
        lead = a.election(name).campaign(timeout=30, on_lost=lambda _l, r: calls.append(r))
        lead.resign()
        assert lead.state is State.RESIGNED
        assert lead.lost is False
        with pytest.raises(tenure.NotLeader, match="resigned"):
            lead.ensure()
        with pytest.raises(tenure.NotLeader):
            lead.guarded_write(f"{name}/data", b"v")
        lead.on_lost(lambda _l, r: calls.append(r))
        assert calls == []
        assert a.election(name).leader() is None


def test_timeout_zero_wins_a_free_election_and_fails_at_once_on_a_held_one(
    target: Target,
) -> None:
    timeout_zero_is_exactly_one_try(target)


def test_a_guarded_write_refused_by_the_store_marks_the_leadership_lost_once(
    target: Target,
) -> None:
    refused_write_is_a_loss(target)


def test_resign_is_not_a_loss(target: Target) -> None:
    resign_is_not_a_loss(target)


def test_a_crashed_leader_blocks_its_election_for_at_most_ttl_plus_one_second(
    target: Target,
) -> None:
    ttl = target.profile.ttl
    took: list[float] = []
    with CandidateGroup(target.url, target.election("crash-parity"), target.workdir) as group:
        for _round in range(2):
            leader = group.spawn(ttl=ttl)
            leader.wait_for("elected", timeout=60)
            follower = group.spawn(ttl=ttl)
            follower.wait_for("started", timeout=60)
            killed_at = time.monotonic()
            leader.kill()
            elected = follower.wait_for("elected", timeout=ttl + 30)
            took.append(elected["t"] - killed_at)
            follower.kill()
            follower.wait_exit()
        report = group.check()
    assert report.ok, report.violations
    assert max(took) < ttl + FAILOVER_SLACK, (
        f"{target.profile.name}: failover took {took} s at TTL {ttl:g} s"
    )


def test_parity_holds_on_a_three_node_cluster(cluster_target: Target) -> None:
    timeout_zero_is_exactly_one_try(cluster_target)
    refused_write_is_a_loss(cluster_target)
    resign_is_not_a_loss(cluster_target)
