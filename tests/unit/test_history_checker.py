"""The history checker must be able to fail: each hand-made broken history is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.suite.history import Event, check, load, record

pytestmark = pytest.mark.unit


def elected(cid: str, token: int, t: float, deadline: float) -> Event:
    return {"kind": "elected", "cid": cid, "token": token, "t": t, "deadline": deadline,
            "election": "e"}


def test_a_clean_handover_has_no_violation() -> None:
    events = [
        elected("a", 1, 0.0, 1.0),
        {"kind": "resign", "cid": "a", "token": 1, "t": 0.5, "election": "e"},
        elected("b", 2, 0.6, 1.6),
    ]
    report = check(events)
    assert report.ok, report.summary()
    assert [i.end for i in report.intervals] == [0.5, 1.6]


def test_overlapping_validity_is_an_s1_violation() -> None:
    events = [elected("a", 1, 0.0, 1.0), elected("b", 2, 0.9, 2.0)]
    report = check(events)
    assert not report.ok
    assert report.violations[0].startswith("S1 e:")


def test_a_renewed_deadline_extends_the_interval() -> None:
    events = [
        elected("a", 1, 0.0, 1.0),
        {"kind": "valid", "cid": "a", "token": 1, "t": 0.8, "deadline": 1.8, "election": "e"},
        elected("b", 2, 1.5, 2.5),
    ]
    assert any(v.startswith("S1") for v in check(events).violations)


def test_tokens_that_do_not_rise_are_an_s2_violation() -> None:
    events = [elected("a", 5, 0.0, 1.0), elected("b", 5, 2.0, 3.0)]
    assert any(v.startswith("S2") for v in check(events).violations)


def test_a_stale_fenced_write_accepted_after_a_newer_one_is_an_s2_violation() -> None:
    events = [
        elected("a", 1, 0.0, 1.0),
        elected("b", 2, 1.1, 2.0),
        {"kind": "fenced", "cid": "b", "token": 2, "t": 1.2, "accepted": True, "election": "e"},
        {"kind": "fenced", "cid": "a", "token": 1, "t": 1.3, "accepted": True, "election": "e"},
    ]
    assert any("accepted after token 2" in v for v in check(events).violations)


def test_a_guarded_write_sent_after_a_newer_leader_began_is_an_s3_violation() -> None:
    events = [
        elected("a", 1, 0.0, 1.0),
        elected("b", 2, 1.1, 2.0),
        {"kind": "guarded", "cid": "a", "token": 1, "t": 1.5, "ok": True, "election": "e"},
    ]
    assert any(v.startswith("S3") for v in check(events).violations)


def test_histories_round_trip_through_files_and_torn_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    record(path, **elected("a", 1, 0.0, 1.0))
    with open(path, "a") as f:
        f.write('{"kind": "elec')
    assert load(path) == [elected("a", 1, 0.0, 1.0)]


def test_a_win_learnt_only_after_its_deadline_is_no_leadership() -> None:
    """Paused right after winning: ``elected`` is recorded after its own deadline, while
    its successor (higher token) leads. Not an overlap, not a token going down -- but a
    write it got accepted after the successor's is still caught."""
    events = [
        elected("b", 2, 1.0, 3.0),
        elected("a", 1, 1.5, 1.2),  # learnt at 1.5 that it had won, valid until 1.2
        {"kind": "fenced", "cid": "b", "token": 2, "t": 1.1, "t_done": 1.15,
         "accepted": True, "election": "e"},
    ]
    assert check(events).ok, check(events).summary()
    events.append({"kind": "fenced", "cid": "a", "token": 1, "t": 1.6, "accepted": True,
                   "election": "e"})
    assert any("accepted after token 2" in v for v in check(events).violations)
    overlapping = [elected("b", 2, 1.0, 3.0), elected("a", 3, 1.5, 1.6)]
    assert any(v.startswith("S1") for v in check(overlapping).violations)
