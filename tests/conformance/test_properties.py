"""The SPEC's properties on every backend: candidates are separate OS processes, faults
are real signals; the steps of each property are in tenure.conformance.suite.properties,
where each function's docstring is the SPEC sentence it proves."""

from __future__ import annotations

import pytest

from tenure.conformance.suite import properties
from tenure.conformance.suite.backends import Target

pytestmark = pytest.mark.conformance


def test_s1_s2_candidates_taking_turns_never_overlap_and_tokens_rise(target: Target) -> None:
    properties.s1_s2_turns(target)


def test_s2_tokens_keep_rising_after_every_candidate_process_restarts(target: Target) -> None:
    properties.s2_restarts(target)


def test_s3_a_leader_paused_past_its_ttl_reports_the_loss_and_its_writes_fail(
    target: Target,
) -> None:
    properties.s3_paused_leader(target)


def test_l1_resign_hands_over_promptly(target: Target) -> None:
    outcome = properties.l1_resign_handover(target)
    print(f"{target.profile.name} handover median {outcome.measured['handover_median']:.4f} s")


def test_l2_a_killed_leader_is_replaced_within_ttl_plus_a_bound(target: Target) -> None:
    outcome = properties.l2_crash_failover(target)
    print(f"{target.profile.name} failover {outcome.measured['failover']:.3f} s")


def test_l4_observers_converge_on_the_current_leader_in_token_order(target: Target) -> None:
    properties.l4_observers_converge(target)
