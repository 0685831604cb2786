"""Properties under store faults (store backends, fresh 3-node lab clusters): a client
cut from its store, store nodes killed, no quorum. Steps in
tenure.conformance.suite.properties."""

from __future__ import annotations

import pytest

from tenure.conformance.suite import properties
from tenure.conformance.suite.backends import Target

pytestmark = [pytest.mark.conformance, pytest.mark.chaos]


@pytest.mark.parametrize("blackhole", [False, True], ids=["refused", "blackholed"])
def test_s4_a_leader_cut_from_its_store_steps_down_by_its_deadline(
    cluster_target: Target, blackhole: bool
) -> None:
    properties.s4_cut_from_store(cluster_target, blackhole)


def test_l3_an_election_keeps_or_regains_a_leader_when_a_store_node_dies(
    cluster_target: Target,
) -> None:
    properties.l3_node_kill(cluster_target)


def test_s4_no_quorum_no_leader_and_the_leader_steps_down(cluster_target: Target) -> None:
    properties.s4_no_quorum(cluster_target)
