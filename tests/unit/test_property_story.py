"""A property that times out says what each candidate reported (conformance failures in
CI are read from that message alone)."""

from __future__ import annotations

import json
import sys

import pytest

from tenure.conformance.suite import properties
from tenure.conformance.suite.harness import CandidateProcess

pytestmark = pytest.mark.unit

EVENTS = [
    {"kind": "started", "t": 1.0},
    {"kind": "elected", "t": 2.0},
    {"kind": "valid", "t": 2.0},
    {"kind": "guarded", "t": 2.5},
    {"kind": "valid", "t": 3.0},
    {"kind": "lost", "t": 3.5, "reason": "validity deadline passed"},
]


def test_the_story_folds_acting_runs_and_names_losses_and_stderr() -> None:
    script = (f"import sys; sys.stderr.write('renewal answered 500\\n'); "
              f"print(*{[json.dumps(e) for e in EVENTS]!r}, sep='\\n')")
    member = CandidateProcess([sys.executable, "-c", script], "c1")
    member.wait_for("eof", timeout=30)
    member.wait_exit()
    properties._wait(lambda: bool(member.stderr()), 30, "the stderr reader")

    story = properties._story([member])

    assert story.startswith("c1: started@1.00 elected@2.00 acting@2.00..3.00 "
                            "lost@3.50(validity deadline passed) eof@")
    assert "stderr: renewal answered 500" in story


def test_a_timed_out_wait_carries_the_story() -> None:
    with pytest.raises(properties.PropertyFailed, match="a leader; c1: lost"):
        properties._wait(lambda: False, 0.05, "a leader", lambda: "c1: lost")
