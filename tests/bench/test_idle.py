"""The idle measurement of ``tenure bench`` (issue 14): it runs on SQLite, the CPU counters
it reads from /proc are real seconds, and its table survives ``--json`` / ``--from-json``.
Nothing here asserts a timing or a ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.conformance.benchmarks.idle import tree_cpu
from tenure.conformance.benchmarks.report import idle_lines, idle_table
from tenure.conformance.benchmarks.runner import Row
from tenure.conformance.benchmarks.systems import IDLE_TTL

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]


def _bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli.main", "bench", *argv],
                          capture_output=True, text=True, timeout=170, check=False)


def test_tree_cpu_reads_seconds_that_match_this_process_clock() -> None:
    before, own = tree_cpu([os.getpid()]), time.process_time()
    while time.process_time() - own < 0.3:
        pass  # burn CPU: the counter must move by as much
    used, own_used = tree_cpu([os.getpid()]) - before, time.process_time() - own
    assert used >= 0
    assert abs(used - own_used) < 0.1, (used, own_used)  # seconds, not clock ticks
    assert tree_cpu([2**22 + 7]) == 0.0  # a pid that does not exist counts nothing


def test_tree_cpu_counts_the_living_descendants_of_a_root() -> None:
    """A busy grandchild that still runs is charged to the root it descends from (a
    worker's ``tenure serve`` or helper children are counted this way), not only once
    reaped into its parent's cutime."""
    burn = ("import sys, time\nt = time.process_time()\n"
            "while time.process_time() - t < 0.4: pass\nsys.stdin.read()\n")
    spawn = ("import subprocess, sys\n"
             f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n")
    parent = subprocess.Popen([sys.executable, "-c", spawn], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while tree_cpu([parent.pid]) < 0.35:
            assert parent.poll() is None, "the spawning process ended early"
            assert time.monotonic() < deadline, "the grandchild's CPU was never counted"
            time.sleep(0.05)
        assert parent.poll() is None  # the grandchild is not reaped: it was walked to
        own = tree_cpu([parent.pid]) - sum(tree_cpu([c]) for c in _children(parent.pid))
        assert own < 0.3, own  # the parent itself only started a process
    finally:
        parent.communicate(b"", timeout=60)
    assert tree_cpu([parent.pid]) == 0.0  # reaped: gone from /proc


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def test_idle_runs_on_sqlite_and_its_table_is_read_back_from_json(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    result = _bench("--only", "idle", "--tools", "tenure", "--no-scale", "--idle-window",
                    "5", "--idle-followers", "3", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    row = next(r for r in json.loads(out.read_text())["rows"] if r["measurement"] == "idle")
    assert row["status"] == "ok", row
    extra = row["extra"]
    # every idle row runs at one TTL (IDLE_TTL, 2 s), not SQLite's 1 s minimum
    assert row["ttl"] == IDLE_TTL == extra["ttl"] == 2.0, (row["ttl"], extra["ttl"])
    assert extra["candidates"] == 4 and extra["alive"] == 4
    assert extra["window"] >= 1.0
    # An idle SQLite candidate uses ~0.5 ms of CPU a second: 4 of them over 5 s expect
    # about one clock tick, so 0 is a true reading here (that the counter follows a
    # busy process tree is shown by the two tests above).
    assert extra["client_cpu"] >= 0
    assert extra["client_cpu"] < extra["window"] * (os.cpu_count() or 1)  # seconds
    assert extra["store_cpu"] == 0 and extra["baseline_per_min"] == 0  # embedded
    assert "embedded" in extra["store_note"]
    assert "| sqlite | tenure | 4 |" in result.stdout
    again = _bench("--from-json", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "## Idle cost" in again.stdout and "every row at TTL 2 s" in again.stdout
    assert "| sqlite | tenure | 4 |" in again.stdout


def test_idle_ratios_are_over_kazoo_on_zookeeper_and_failures_keep_their_reason() -> None:
    def idle(store: str, system: str, client: float, store_cpu: float) -> Row:
        return Row(store, system, "idle", "ok", extra={
            "candidates": 11, "window": 30.0, "client_per_min": client,
            "store_per_min": store_cpu, "baseline_per_min": 0.1})

    rows = [idle("zookeeper", "kazoo Election", 2.0, 4.0),
            idle("zookeeper", "tenure", 1.0, 6.0),
            Row("etcd", "tenure", "idle", "failed", reason="RuntimeError: boom")]
    text = idle_table(rows)
    assert "| zookeeper | tenure | 11 | 30 | 1.000 | 6.000 | 0.100 | 0.5 | 1.5 |" in text
    assert "| etcd | tenure | failed: RuntimeError: boom |" in text
    verdicts = "\n".join(idle_lines(rows))
    assert "idle client CPU 1.000 s/min <= kazoo Election on ZooKeeper 2.000: met" in verdicts
    assert "idle store CPU 6.000 s/min" in verdicts and "MISSED by 2.000" in verdicts


def test_bad_idle_window_is_refused_by_name() -> None:
    result = _bench("--idle-window", "0")
    assert result.returncode != 0
    assert "--idle-window" in result.stderr and "more than 0 seconds" in result.stderr
    assert "Traceback" not in result.stderr
