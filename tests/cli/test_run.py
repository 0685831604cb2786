"""``tenure run`` end to end: real ``tenure`` processes on the SQLite backend."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.childproc import spawn_guarded

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

TTL = "1"
WAIT = 30.0

JOB = """
echo "start $TENURE_FENCING_TOKEN $$ $TENURE_ELECTION $TENURE_CANDIDATE_ID" >> "$LOG"
trap 'echo "term $TENURE_FENCING_TOKEN" >> "$LOG"; exit 0' TERM
while true; do sleep 0.05; done
"""


def tenure(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return spawn_guarded(
        [sys.executable, "-m", "tenure.cli.main", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
    )


def wait_lines(path: Path, count: int, timeout: float = WAIT) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"{path} has {path.read_text() if path.exists() else ''!r}, "
                         f"wanted {count} lines")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def wait_dead(pid: int, timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < end, f"process {pid} still alive"
        time.sleep(0.02)


@pytest.fixture
def backend(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/store.db"


def test_only_one_runs_and_a_killed_leaders_job_is_replaced_with_a_larger_token(
    backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    env = {**os.environ, "LOG": str(log)}
    argv = ("run", "--backend", backend, "--election", "cron/nightly", "--ttl", TTL,
            "--grace", "1", "--", "sh", "-c", JOB)
    first = tenure(*argv, env=env)
    [line] = wait_lines(log, 1)
    second = tenure(*argv, env=env)
    try:
        _, token1, job1, election, _candidate = line.split()
        assert election == "cron/nightly"
        leader_proc = first
        time.sleep(1.5)  # the waiting one must NOT start during this window (> TTL)
        assert len(log.read_text().splitlines()) == 1
        leader_proc.send_signal(signal.SIGKILL)
        leader_proc.wait()
        wait_dead(int(job1))  # the job dies with its tenure run (parent-death signal)
        lines = wait_lines(log, 2)
        _, token2, job2, *_ = lines[1].split()
        assert int(token2) > int(token1)
        assert alive(int(job2))
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_exit_status_of_the_command_is_passed_through_and_leadership_released(
    backend: str,
) -> None:
    done = tenure("run", "--backend", backend, "--election", "jobs/x", "--", "sh", "-c", "exit 7")
    assert done.wait(timeout=WAIT) == 7
    leader = tenure("leader", "--backend", backend, "--election", "jobs/x")
    assert leader.wait(timeout=WAIT) == 3  # resigned: nobody leads


def test_sigterm_stops_the_command_and_resigns(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    runner = tenure("run", "--backend", backend, "--election", "jobs/term", "--", "sh", "-c",
                    JOB, env={**os.environ, "LOG": str(log)})
    wait_lines(log, 1)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=WAIT) == 128 + signal.SIGTERM
    assert wait_lines(log, 2)[1].startswith("term ")
    leader = tenure("leader", "--backend", backend, "--election", "jobs/term")
    assert leader.wait(timeout=WAIT) == 3


def test_a_lost_leadership_sigterms_the_command_at_once(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    runner = tenure("run", "--backend", backend, "--election", "jobs/lost", "--ttl", TTL,
                    "--", "sh", "-c", JOB, env={**os.environ, "LOG": str(log)})
    wait_lines(log, 1)
    # An operator (or the store) removes the leader's entry: the next renewal sees it.
    with sqlite3.connect(backend.removeprefix("sqlite://")) as db:
        db.execute("DELETE FROM candidates")
    assert runner.wait(timeout=WAIT) == 75
    assert wait_lines(log, 2)[1].startswith("term ")
    assert b"leadership lost" in runner.stderr.read()  # type: ignore[union-attr]


def test_campaign_timeout_exits_3(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    holder = tenure("run", "--backend", backend, "--election", "jobs/busy", "--", "sh", "-c",
                    JOB, env={**os.environ, "LOG": str(log)})
    try:
        wait_lines(log, 1)
        late = tenure("run", "--backend", backend, "--election", "jobs/busy",
                      "--timeout", "0.5", "--", "true")
        assert late.wait(timeout=WAIT) == 3
        assert b"did not win within 0.5 s" in late.stderr.read()  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait()
