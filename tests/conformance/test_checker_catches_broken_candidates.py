"""Proving the suite can fail: deliberately broken candidates on a real backend must be
caught by the history checker. These tests pass only when the violation is detected."""

from __future__ import annotations

import pytest
from tenure.conformance.backends import Target
from tenure.conformance.harness import CandidateGroup

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
