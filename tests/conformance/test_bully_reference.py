"""The reference ``bully://`` backend (the Bully algorithm, no store) is fast but
unsafe: the suite must catch its split brain under a partition. This test passes only
when the checker reports the S1 violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.lab.cluster import free_port
from tenure.conformance.lab.proxy import Proxy
from tenure.conformance.suite.harness import CandidateGroup

pytestmark = pytest.mark.conformance

HOST = "127.0.0.1"


def test_a_partition_gives_bully_two_leaders_and_the_checker_says_so(tmp_path: Path) -> None:
    low, high = (HOST, free_port()), (HOST, free_port())
    to_low, to_high = Proxy(low), Proxy(high)  # each side reaches the other through one
    try:
        group = CandidateGroup("", "bully/primary", tmp_path)
        with group:
            # Position in the peer list is priority: position 1 beats position 0.
            group.backend = f"bully://{to_low.address},{HOST}:{high[1]}?me=1"
            higher = group.spawn(ttl=1.0, name="higher")
            higher.wait_for("elected", timeout=30)
            group.backend = f"bully://{HOST}:{low[1]},{to_high.address}?me=0"
            lower = group.spawn(ttl=1.0, name="lower")
            lower.wait_for("started", timeout=30)
            mark = len(higher.events)
            higher.wait_for("valid", after=mark)
            assert not lower.has("elected")  # a higher peer answers: it waits
            to_low.cut()
            to_high.cut()
            lower.wait_for("elected", timeout=30)  # it sees no higher peer: split brain
            higher.wait_for("valid", after=len(higher.events))
            report = group.check(save=False)
    finally:
        to_low.close()
        to_high.close()
    assert any(v.startswith("S1") for v in report.violations), report.summary()


def test_without_faults_bully_hands_over_cleanly(tmp_path: Path) -> None:
    """The control case: the violation above comes from the partition, not the harness."""
    low, high = (HOST, free_port()), (HOST, free_port())
    peers = f"{HOST}:{low[1]},{HOST}:{high[1]}"
    with CandidateGroup("", "bully/control", tmp_path) as group:
        group.backend = f"bully://{peers}?me=1"
        higher = group.spawn(ttl=1.0, hold=0.5, name="higher")
        higher.wait_for("elected", timeout=30)
        group.backend = f"bully://{peers}?me=0"
        lower = group.spawn(ttl=1.0, name="lower")
        lower.wait_for("started", timeout=30)
        higher.wait_for("resigned", timeout=30)
        lower.wait_for("elected", timeout=30)
        report = group.check(save=False)
    assert report.ok, report.summary()
