"""The SPEC's properties, written once and run on every backend, with candidates as
separate OS processes and faults injected by real signals and real store failures."""

from __future__ import annotations

import time

import pytest
from tenure.conformance.backends import Target
from tenure.conformance.harness import CandidateGroup

pytestmark = pytest.mark.conformance


def test_s1_s2_candidates_taking_turns_never_overlap_and_tokens_rise(target: Target) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("turns"), target.workdir) as group:
        members = [group.spawn(ttl=ttl, hold=0.1, rounds=3) for _ in range(5)]
        for member in members:
            assert member.wait_exit(timeout=120) == 0, member.stderr()
        report = group.check()
    assert report.ok, report.summary()
    assert len(report.intervals) == 15
    assert report.fenced_accepted > 0 and report.guarded_ok > 0


def test_s2_tokens_keep_rising_after_every_candidate_process_restarts(target: Target) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("restart"), target.workdir) as group:
        first_run = [group.spawn(ttl=ttl, hold=0.05, rounds=2) for _ in range(3)]
        first_run[0].wait_for("elected", timeout=60)
        for member in first_run:
            member.kill()
        second_run = [group.spawn(ttl=ttl, hold=0.05, rounds=2) for _ in range(3)]
        for member in second_run:
            assert member.wait_exit(timeout=120) == 0, member.stderr()
        report = group.check()
    assert report.ok, report.summary()
    tokens = [i.token for i in report.intervals]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert len(tokens) >= 7


def test_s3_a_leader_paused_past_its_ttl_reports_the_loss_and_its_writes_fail(
    target: Target,
) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("pause"), target.workdir) as group:
        leader = group.spawn(ttl=ttl, tick=0.05)
        elected = leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        leader.pause()
        successor = follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
        follower.wait_for("fenced", accepted=True)
        mark = len(leader.events)
        leader.resume()
        lost = leader.wait_for("lost", after=mark)
        assert leader.wait_exit() == 0
        report = group.check()
    # Wherever the pause hit, the resumed leader acts at least once before it notices
    # the loss; every such write reaching the fence or the store is refused.
    stale = [e for e in leader.events[mark:] if e["kind"] in ("fenced", "guarded")
             and e["t"] > successor["t"]]
    assert stale, leader.events[mark:]
    assert all(not e.get("accepted", e.get("ok")) for e in stale), stale
    assert successor["token"] > elected["token"]
    assert lost["reason"]
    assert report.ok, report.summary()


def test_l1_resign_hands_over_promptly(target: Target) -> None:
    with CandidateGroup(target.url, target.election("resign"), target.workdir) as group:
        leader = group.spawn(ttl=max(5.0, target.profile.ttl), hold=0.5)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=max(5.0, target.profile.ttl))
        follower.wait_for("started", timeout=60)
        resigned = leader.wait_for("resigned")
        elected = follower.wait_for("elected")
        report = group.check()
    assert elected["t"] - resigned["t"] < 2.0
    assert report.ok, report.summary()


def test_l2_a_killed_leader_is_replaced_within_ttl_plus_a_bound(target: Target) -> None:
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("crash"), target.workdir) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        killed_at = time.monotonic()
        leader.kill()
        elected = follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
        report = group.check()
    assert elected["t"] - killed_at < target.profile.failover_bound
    assert report.ok, report.summary()
