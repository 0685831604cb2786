"""``tenure run`` end to end: real ``tenure`` processes on the SQLite backend."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tenure.childproc import spawn_guarded

pytestmark = [pytest.mark.cli, pytest.mark.sqlite]

TTL = "1"
SAFE_TTL = "3"
"""For tests that must not see a leadership lost to a starved renewal (2 loaded cores)."""
WAIT = 30.0

JOB = """
echo "start $TENURE_FENCING_TOKEN $$ $TENURE_ELECTION $TENURE_CANDIDATE_ID" >> "$LOG"
trap 'echo "term $TENURE_FENCING_TOKEN" >> "$LOG"; exit 0' TERM
while true; do sleep 0.05; done
"""


LOCKED_JOB = """
import fcntl, os, signal, sys, time
log = open(os.environ["LOG"], "a", buffering=1)
token = os.environ["TENURE_FENCING_TOKEN"]
def say(kind):
    log.write(f"{kind} {token} {os.getpid()} {time.monotonic():.6f} "
              f"{os.environ['TENURE_ELECTION']} {os.environ['TENURE_CANDIDATE_ID']}\\n")
held = open(os.environ["LOCK"], "w")
try:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the job is gone
except BlockingIOError:
    say("overlap")
    sys.exit(1)
signal.signal(signal.SIGTERM, lambda *_: (say("term"), sys.exit(0)))
say("start")
while True:
    time.sleep(0.05)
"""
"""A job that records ``start``/``term`` (token, pid, CLOCK_MONOTONIC time) and holds
an exclusive lock while it runs: a job started while another is alive logs ``overlap``."""


class JobEvent(NamedTuple):
    kind: str  # start, term, overlap
    token: int
    pid: int
    at: float = 0.0
    election: str = ""


def job_events(path: Path) -> list[JobEvent]:
    """The complete lines of LOCKED_JOB's log, parsed."""
    events = []
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written
        kind, token, pid, at, election, *_ = line.split()
        events.append(JobEvent(kind, int(token), int(pid), float(at), election))
    return events


def wait_events(path: Path, done: Callable[[list[JobEvent]], bool],
                timeout: float = WAIT) -> list[JobEvent]:
    """Polls ``path`` (written by other processes) until ``done(events)``."""
    end = time.monotonic() + timeout
    while not ((events := job_events(path)) and done(events)):
        assert time.monotonic() < end, f"{path}: {events!r}"
        time.sleep(0.02)
    return events


def assert_one_at_a_time(events: list[JobEvent]) -> None:
    """No job found another's lock taken, tokens grow, each stopped job's ``term``
    comes before the next ``start``."""
    assert not [e for e in events if e.kind == "overlap"], events
    starts = [e for e in events if e.kind == "start"]
    assert [e.token for e in starts] == sorted({e.token for e in starts}), events
    for before, after in itertools.pairwise(starts):
        terms = [e for e in events if e.kind == "term" and e.pid == before.pid]
        assert all(t.at < after.at for t in terms), events


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
    """Three candidates: while one leads, the others' jobs do not start (the exclusive
    lock every job takes is never found taken); the leader's ``tenure run`` is SIGKILLed
    and its job dies with it; a waiting one's job replaces it with a larger token. A
    leader may legitimately lose its leadership on a loaded machine before the kill:
    then its job was stopped (``term``) before the next one started, and the one
    killed is whoever leads at that point."""
    log, lock = tmp_path / "job.log", tmp_path / "job.lock"
    env = {**os.environ, "LOG": str(log), "LOCK": str(lock)}
    argv = ("run", "--backend", backend, "--election", "cron/nightly", "--ttl", SAFE_TTL,
            "--grace", "1", "--", sys.executable, "-c", LOCKED_JOB)
    candidates = [tenure(*argv, env=env)]
    try:
        [first] = wait_events(log, lambda e: len(e) >= 1)
        assert (first.kind, first.election) == ("start", "cron/nightly")
        candidates += [tenure(*argv, env=env), tenure(*argv, env=env)]
        # Longer than the TTL: a waiting candidate must not start meanwhile.
        time.sleep(1.5 * float(SAFE_TTL))
        if candidates[0].poll() is None:
            assert [e.kind for e in job_events(log)] == ["start"], job_events(log)
        else:  # it lost its leadership: its job was stopped before another started
            assert candidates[0].returncode == 75
            stopped = job_events(log)[1]
            assert (stopped.kind, stopped.token, stopped.pid) == ("term", first.token, first.pid)
        leader = job_events(log)[-1]
        assert leader.kind == "start"
        [runner] = [c for c in candidates if c.pid == parent_of(leader.pid)]
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        wait_dead(leader.pid)  # the job dies with its tenure run (parent-death signal)
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > leader.token)
        assert alive(events[-1].pid)
        assert_one_at_a_time(events)
    finally:
        for proc in candidates:
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
