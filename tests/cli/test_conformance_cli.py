"""``tenure conformance`` on a user's store: non-destructive properties, a table, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cli, pytest.mark.sqlite, pytest.mark.conformance, pytest.mark.slow]


def test_conformance_checks_a_store_and_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "conformance",
         "--backend", f"sqlite://{tmp_path}/user.db", "--duration", "5", "--seed", "42",
         "--json", str(report)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["seed"] == 42
    names = [row["property"] for row in data["results"]]
    assert names[:6] == ["S1/S2 turns", "S2 restarts", "S3 paused leader",
                         "L1 resign handover", "L2 crash failover", "L4 observers converge"]
    assert names[-1] == "chaos seed=42"
    assert all(row["ok"] for row in data["results"])
    assert "L1 resign handover" in result.stdout
    handover = next(r for r in data["results"] if r["property"] == "L1 resign handover")
    assert 0 < handover["measured"]["handover_median"] < 2.0


def test_unknown_lab_backends_and_destructive_sqlite_are_usage_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "conformance", "--backend",
         f"sqlite://{tmp_path}/x.db", "--destructive"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2 and "needs a store reached over the network" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "conformance", "--lab", "mongo"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr
