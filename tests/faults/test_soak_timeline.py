"""A soak keeps each round's fault timeline: every fault injected and every repair made,
in time order, with times on the round's clock and on CLOCK_MONOTONIC (the clock of the
history events), in the --json report and printed for a round that violated. A CI soak
round once found an S1 overlap whose cause had to be inferred for want of it."""

from __future__ import annotations

import json

import pytest

from tenure.conformance.faults.soak import SoakTotals, timeline_lines
from tenure.conformance.suite.chaos import ChaosReport
from tenure.conformance.suite.history import Interval, Report

pytestmark = [pytest.mark.unit, pytest.mark.faults]


def _round(seed: int, violations: list[str]) -> ChaosReport:
    report = ChaosReport(seed, "redis")
    start = 1000.0  # the round's start on CLOCK_MONOTONIC
    report.schedule = [
        {"t": 0.4, "at": start + 0.4, "fault": "kill", "candidate": "c1"},
        {"t": 2.0, "at": start + 2.0, "fault": "partition-split", "evidence": "rules",
         "observed": True, "sides": ("a", "b"), "repair_at": start + 5.5},
        {"t": 1.1, "at": start + 1.1, "fault": "pause", "candidate": "c2"},
    ]
    report.repairs = [
        {"t": 5.6, "at": start + 5.6, "repair": "call-net", "subject": "heal"},
        {"t": 3.0, "at": start + 3.0, "repair": "resume", "subject": "c2"},
    ]
    report.faults.update(e["fault"] for e in report.schedule)
    report.check = Report(intervals=[Interval("e", "c0", 1, start, start + 9)],
                          violations=violations)
    return report


def test_each_round_reports_its_faults_and_repairs_in_time_order() -> None:
    # < 0.1 s: the totals alone, from two synthetic rounds.
    totals = SoakTotals("redis", seed=3)
    totals.add(_round(3, []))
    totals.add(_round(4, ["S1: c0 (token 1) and c3 (token 2) overlapped by 21.6 ms"]))
    data = json.loads(json.dumps(totals.as_dict()))  # JSON-ready, as --json writes it
    rounds = data["round_reports"]
    assert [r["seed"] for r in rounds] == [3, 4]
    assert [r["verdict"] for r in rounds] == ["ok", "violation"]
    assert rounds[1]["violations"] == [
        "S1: c0 (token 1) and c3 (token 2) overlapped by 21.6 ms"]
    timeline = rounds[1]["timeline"]
    assert [e.get("fault") or e["repair"] for e in timeline] == [
        "kill", "pause", "partition-split", "resume", "call-net"]
    assert [e["t"] for e in timeline] == sorted(e["t"] for e in timeline)
    split = timeline[2]
    assert split["at"] == 1002.0 and split["repair_due"] == 5.5
    assert split["sides"] == ["a", "b"] and split["evidence"] == "rules"
    assert timeline[3] == {"t": 3.0, "at": 1003.0, "repair": "resume", "subject": "c2"}
    lines = timeline_lines(timeline)
    assert lines[0].startswith("  +  0.400 s  kill (") and "candidate=c1" in lines[0]
    assert "repair call-net" in lines[-1]
