"""The SPEC's safety and liveness properties on the embedded SQLite backend, with every
candidate a separate OS process and faults injected by real signals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tenure.conformance.harness import CandidateGroup

pytestmark = [pytest.mark.sqlite, pytest.mark.conformance]

TTL = 1.0
BOUND = 2.0  # generous: a loaded 2-core machine


@pytest.fixture
def backend(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/store.db"


def test_s1_s2_candidates_taking_turns_never_overlap_and_tokens_rise(
    backend: str, tmp_path: Path
) -> None:
    with CandidateGroup(backend, "props/turns", tmp_path) as group:
        members = [group.spawn(ttl=TTL, hold=0.1, rounds=3) for _ in range(5)]
        for member in members:
            assert member.wait_exit(timeout=60) == 0, member.stderr()
        report = group.check()
    assert report.ok, report.summary()
    assert len(report.intervals) == 15
    assert report.fenced_accepted > 0 and report.guarded_ok > 0


def test_s2_tokens_keep_rising_after_every_process_restarts(
    backend: str, tmp_path: Path
) -> None:
    with CandidateGroup(backend, "props/restart", tmp_path) as group:
        first_run = [group.spawn(ttl=TTL, hold=0.05, rounds=2) for _ in range(3)]
        first_run[0].wait_for("elected")
        for member in first_run:
            member.kill()
        second_run = [group.spawn(ttl=TTL, hold=0.05, rounds=2) for _ in range(3)]
        for member in second_run:
            assert member.wait_exit(timeout=60) == 0, member.stderr()
        report = group.check()
    assert report.ok, report.summary()
    tokens = [i.token for i in report.intervals]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert len(tokens) >= 7  # >= 1 from the killed run, 6 from the second


def test_s3_a_leader_paused_past_its_ttl_reports_the_loss_and_its_writes_fail(
    backend: str, tmp_path: Path
) -> None:
    with CandidateGroup(backend, "props/pause", tmp_path) as group:
        leader = group.spawn(ttl=TTL, tick=0.05)
        elected = leader.wait_for("elected")
        follower = group.spawn(ttl=TTL)
        follower.wait_for("started")
        leader.pause()
        successor = follower.wait_for("elected")
        follower.wait_for("fenced", accepted=True)
        mark = len(leader.events)
        leader.resume()
        lost = leader.wait_for("lost", after=mark)
        stale_fenced = leader.wait_for("fenced", after=mark)
        stale_guarded = leader.wait_for("guarded", after=mark)
        report = group.check()
    assert successor["token"] > elected["token"]
    assert "deadline passed" in lost["reason"] or "session" in lost["reason"]
    assert stale_fenced["accepted"] is False
    assert stale_guarded["ok"] is False
    assert report.ok, report.summary()


def test_l1_resign_hands_over_promptly(backend: str, tmp_path: Path) -> None:
    with CandidateGroup(backend, "props/resign", tmp_path) as group:
        leader = group.spawn(ttl=5.0, hold=0.3)
        leader.wait_for("elected")
        follower = group.spawn(ttl=5.0)
        resigned = leader.wait_for("resigned")
        elected = follower.wait_for("elected")
        report = group.check()
    assert elected["t"] - resigned["t"] < BOUND
    assert report.ok, report.summary()


def test_l2_a_killed_leader_is_replaced_within_ttl_plus_a_bound(
    backend: str, tmp_path: Path
) -> None:
    with CandidateGroup(backend, "props/crash", tmp_path) as group:
        leader = group.spawn(ttl=TTL)
        leader.wait_for("elected")
        follower = group.spawn(ttl=TTL)
        follower.wait_for("started")
        killed_at = time.monotonic()
        leader.kill()
        elected = follower.wait_for("elected")
        report = group.check()
    assert elected["t"] - killed_at < TTL + BOUND
    assert report.ok, report.summary()
