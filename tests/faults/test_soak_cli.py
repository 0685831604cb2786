"""``tenure conformance --soak MINUTES``: seeded rounds back to back, a running count, a
closing table and a JSON report with faults_by_class and violations; on a lab cluster
in namespaces the partition classes are drawn; bad input is a usage error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.faults, pytest.mark.cli, pytest.mark.chaos]


def tenure(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli.main", "conformance", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.sqlite
def test_a_soak_on_a_users_store_counts_rounds_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    result = tenure("--backend", f"sqlite://{tmp_path}/user.db", "--soak", "0.1",
                    "--duration", "3", "--seed", "7", "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["violations"] == [] and data["rounds"] >= 1 and data["seed"] == 7
    # Every round injects each kind that applies at least once (a seeded rotation).
    assert set(data["faults_by_class"]) == {"kill", "pause", "clock-step"}, data
    assert data["leaderships"] >= 1
    # Each round's timeline: its faults and the repairs made, with times, in order.
    timeline = data["round_reports"][0]["timeline"]
    assert {e["fault"] for e in timeline if "fault" in e} == {"kill", "pause", "clock-step"}
    assert any(e.get("repair") == "resume" for e in timeline), timeline
    assert all(isinstance(e["t"], float) and isinstance(e["at"], float) for e in timeline)
    assert [e["t"] for e in timeline] == sorted(e["t"] for e in timeline)
    assert "fault class" in result.stdout and "violations 0" in result.stdout
    assert "rounds" in result.stdout  # the running count


@pytest.mark.redis
def test_a_lab_soak_in_namespaces_draws_partition_classes(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    result = tenure("--lab", "redis", "--soak", "0.05", "--duration", "3", "--seed", "3",
                    "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["violations"] == []
    partitions = {k for k in data["faults_by_class"] if "partition" in k}
    assert partitions == {"partition-isolate", "partition-split", "partition-bridge"}, data
    assert data["worst_failover"], data


def test_bad_soak_arguments_are_usage_errors(tmp_path: Path) -> None:
    result = tenure("--backend", f"sqlite://{tmp_path}/x.db", "--soak", "0", timeout=60)
    assert result.returncode == 2 and "--soak takes a number of minutes > 0" in result.stderr
    result = tenure("--backend", f"sqlite://{tmp_path}/x.db", "--soak", "1", "--destructive",
                    timeout=60)
    assert result.returncode == 2 and "needs a store reached over the network" in result.stderr
    assert "Traceback" not in result.stderr
