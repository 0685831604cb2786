"""``tenure run --accept-handoff`` and ``tenure run --priority`` end to end: real
``tenure`` processes on SQLite and a real Redis.

A handoff to the second of two waiting ``tenure run`` processes lands on it with a
larger token, and the old leader's command had exited (its ``term`` line, stamped
with CLOCK_MONOTONIC) before the successor's command started; a request naming an
absent candidate is refused by name and leaves the command running. A declared
priority is listed by ``tenure contenders --json``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_run import (  # tests/cli is on sys.path (pytest's rootdir-relative import)
    LOCKED_JOB,
    assert_one_at_a_time,
    job_events,
    parent_of,
    tenure,
    wait_events,
)

from tenure.conformance.lab.fixtures import SharedClusters, attach_cluster

pytestmark = pytest.mark.cli

TTL = "3"
WAIT = 60.0

SLOW_EXIT = "1.0"
"""Seconds the job takes to exit after SIGTERM (under --grace): a successor started
before the old command exited would find its lock taken (``overlap``)."""
SLOW_JOB = LOCKED_JOB.replace(
    'signal.signal(signal.SIGTERM, lambda *_: (say("term"), sys.exit(0)))',
    'signal.signal(signal.SIGTERM, lambda *_: (say("term"), time.sleep(float(os.environ['
    '"SLOW_EXIT"])), say("gone"), sys.exit(0)))')
assert SLOW_JOB != LOCKED_JOB, "test_run.LOCKED_JOB changed: update SLOW_JOB"


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
                        pytest.param("redis", marks=pytest.mark.redis, id="redis")])
def backend(request: pytest.FixtureRequest, lab_clusters: SharedClusters,
            tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    cluster = lab_clusters.get(request.param)
    attach_cluster(request, cluster)
    return cluster.url


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure.cli.main", *args],
                          capture_output=True, text=True, timeout=WAIT, check=False)


def contenders(backend: str, election: str) -> list[dict[str, object]]:
    listed = cli("contenders", "--backend", backend, "--election", election, "--json")
    if listed.returncode == 1 and "no tenure store at" in listed.stderr:
        return []  # SQLite: the first candidate has not created the store yet
    assert listed.returncode == 0, listed
    parsed: list[dict[str, object]] = json.loads(listed.stdout)
    return parsed


def candidate_of(listed: list[dict[str, object]], proc: subprocess.Popen[bytes]) -> str:
    """The id of the candidate ``tenure run`` process ``proc`` campaigns with (the
    default id is host:pid:random)."""
    [found] = [str(c["candidate_id"]) for c in listed
               if str(c["candidate_id"]).split(":")[-2] == str(proc.pid)]
    return found


def wait_listed(backend: str, election: str,
                procs: list[subprocess.Popen[bytes]]) -> list[dict[str, object]]:
    """Polls ``tenure contenders`` until every process in ``procs`` is listed (there
    is no event for "enqueued")."""
    end = time.monotonic() + WAIT
    while True:
        listed = contenders(backend, election)
        pids = {str(c["candidate_id"]).split(":")[-2] for c in listed}
        if {str(p.pid) for p in procs} <= pids:
            return listed
        for proc in procs:
            assert proc.poll() is None, (proc.returncode, proc.stderr.read())  # type: ignore[union-attr]
        assert time.monotonic() < end, f"not all of {[p.pid for p in procs]} in {listed}"
        time.sleep(0.1)


def test_handoff_lands_on_the_named_waiter_after_the_old_command_exited(
    backend: str, tmp_path: Path,
) -> None:
    election = f"run-handoff/{uuid.uuid4().hex[:8]}"
    log, lock = tmp_path / "job.log", tmp_path / "job.lock"
    env = {**os.environ, "LOG": str(log), "LOCK": str(lock), "SLOW_EXIT": SLOW_EXIT}
    base = ("--backend", backend, "--election", election)
    argv = ("run", *base, "--ttl", TTL, "--grace", "5")
    job = ("--", sys.executable, "-c", SLOW_JOB)
    leader = tenure(*argv, "--accept-handoff", *job, env=env)
    runners = [leader]
    try:
        [first] = wait_events(log, lambda e: len(e) >= 1, timeout=WAIT)
        assert first.kind == "start" and parent_of(first.pid) == leader.pid
        runners.append(tenure(*argv, *job, env=env))
        runners.append(tenure(*argv, *job, env=env))
        listed = wait_listed(backend, election, runners)
        named = candidate_of(listed, runners[2])

        absent = cli("handoff", *base, "--to", "ghost", "--timeout", "5")
        assert absent.returncode == 4, absent
        assert "'ghost' is not a live contender" in absent.stdout, absent
        assert [e.kind for e in job_events(log)] == ["start"], job_events(log)
        assert leader.poll() is None

        moved = cli("handoff", *base, "--to", named, "--timeout", "20")
        assert moved.returncode == 0, (moved, leader.stderr.read()  # type: ignore[union-attr]
                                       if leader.poll() is not None else "")
        assert leader.wait(timeout=WAIT) == 0
        said = leader.stderr.read().decode()  # type: ignore[union-attr]
        assert f"to {named!r}" in said and "exiting" in said, said
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > first.token,
                             timeout=WAIT)
        successor = events[-1]
        assert parent_of(successor.pid) == runners[2].pid, events
        assert_one_at_a_time(events)
        assert [e.kind for e in events] == ["start", "term", "gone", "start"], events
        gone = events[2]
        assert gone.pid == first.pid and gone.at < successor.at, events
        assert runners[1].poll() is None  # the first waiter still waits
    finally:
        for proc in runners:
            proc.kill()
            proc.wait()


def test_a_declared_priority_is_listed_and_a_bad_one_is_refused(backend: str) -> None:
    election = f"run-priority/{uuid.uuid4().hex[:8]}"
    base = ("--backend", backend, "--election", election)
    holder = tenure("run", *base, "--ttl", TTL, "--", "sleep", "60")
    runners = [holder]
    try:
        wait_listed(backend, election, runners)
        runners.append(tenure("run", *base, "--ttl", TTL, "--priority", "7", "--",
                              "sleep", "60"))
        listed = wait_listed(backend, election, runners)
        assert {str(c["candidate_id"]): c["priority"] for c in listed} == {
            candidate_of(listed, holder): 0, candidate_of(listed, runners[1]): 7}, listed
    finally:
        for proc in runners:
            proc.kill()
            proc.wait()
    bad = cli("run", *base, "--priority", "high", "--", "true")
    assert bad.returncode == 2
    assert "--priority: 'high' must be a whole number" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_successor_that_does_not_take_over_leaves_the_old_candidate_leading_again(
    backend: str, tmp_path: Path,
) -> None:
    """The named waiter is frozen (SIGSTOP): it is a live contender until its session
    expires, so the handoff goes ahead -- the command is stopped, the leadership
    released -- but nobody takes over for it. With ``--on-failure keep`` the old
    candidate leads again with a larger token and starts its command again."""
    election = f"run-handoff-keep/{uuid.uuid4().hex[:8]}"
    log, lock = tmp_path / "job.log", tmp_path / "job.lock"
    env = {**os.environ, "LOG": str(log), "LOCK": str(lock), "SLOW_EXIT": "0"}
    base = ("--backend", backend, "--election", election)
    argv = ("run", *base, "--ttl", TTL, "--grace", "5")
    job = ("--", sys.executable, "-c", SLOW_JOB)
    leader = tenure(*argv, "--accept-handoff", *job, env=env)
    runners = [leader]
    try:
        [first] = wait_events(log, lambda e: len(e) >= 1, timeout=WAIT)
        runners.append(tenure(*argv, *job, env=env))
        named = candidate_of(wait_listed(backend, election, runners), runners[1])
        runners[1].send_signal(signal.SIGSTOP)
        failed = cli("handoff", *base, "--to", named, "--timeout", "10")
        assert failed.returncode == 4, failed
        assert f"candidate {named!r} did not take over" in failed.stdout, failed
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > first.token,
                             timeout=WAIT)
        assert parent_of(events[-1].pid) == leader.pid, events
        assert [e.kind for e in events] == ["start", "term", "gone", "start"], events
        assert_one_at_a_time(events)
        assert leader.poll() is None
    finally:
        for proc in runners:
            proc.kill()
            proc.wait()


def test_with_forever_the_old_leader_queues_again_after_handing_off(
    backend: str, tmp_path: Path,
) -> None:
    election = f"run-handoff-forever/{uuid.uuid4().hex[:8]}"
    log, lock = tmp_path / "job.log", tmp_path / "job.lock"
    env = {**os.environ, "LOG": str(log), "LOCK": str(lock), "SLOW_EXIT": "0"}
    base = ("--backend", backend, "--election", election)
    job = ("--", sys.executable, "-c", SLOW_JOB)
    leader = tenure("run", *base, "--ttl", TTL, "--forever", "--accept-handoff", *job, env=env)
    runners = [leader]
    try:
        [first] = wait_events(log, lambda e: len(e) >= 1, timeout=WAIT)
        runners.append(tenure("run", *base, "--ttl", TTL, *job, env=env))
        named = candidate_of(wait_listed(backend, election, runners), runners[1])
        moved = cli("handoff", *base, "--to", named, "--timeout", "20")
        assert moved.returncode == 0, moved
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > first.token,
                             timeout=WAIT)
        assert parent_of(events[-1].pid) == runners[1].pid, events
        assert_one_at_a_time(events)
        wait_listed(backend, election, runners)  # the old leader waits again
        assert leader.poll() is None
    finally:
        for proc in runners:
            proc.kill()
            proc.wait()
