"""The replay command names a bad input and never prints a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.conformance.suite.replay", *args],
                          capture_output=True, text=True, timeout=60)


def test_bad_inputs_are_named_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "junk.jsonl").write_text("not json\n")
    for args, named in ((["--help"], "usage"), ([str(tmp_path / "missing.jsonl")], "missing"),
                        ([str(tmp_path / "junk.jsonl")], "no history events")):
        done = replay(*args)
        assert "Traceback" not in done.stderr + done.stdout
        assert named in done.stderr + done.stdout
    assert replay(str(tmp_path / "missing.jsonl")).returncode == 2


def test_a_violating_history_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    events = [{"kind": "elected", "cid": c, "token": t, "t": s, "deadline": d, "election": "e"}
              for c, t, s, d in (("a", 1, 0.0, 1.0), ("b", 2, 0.5, 2.0))]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    done = replay(str(path))
    assert done.returncode == 1 and "S1 e:" in done.stdout
