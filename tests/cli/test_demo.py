"""``tenure demo`` tells its story and checks it: failover, then a fenced stale write."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.cli, pytest.mark.sqlite, pytest.mark.slow]


def test_demo_fails_over_and_fences_the_stale_leader() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout
    assert "REJECTED by the fence" in result.stdout
    assert "stepped down" in result.stdout
