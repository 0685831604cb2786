"""The hold-out style ``tenure run`` check on the kubernetes backend (a real
kube-apiserver): tests/cli/test_run.py's locked job (it logs ``start``/``term`` with
CLOCK_MONOTONIC and holds an exclusive lock while it runs) under three ``tenure run``
candidates, whose leader is cut off from the apiserver by a proxy, then SIGKILLed in
its successor's turn. One job at a time, tokens rise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.kubernetes import KubernetesCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cli"))
from test_run import (  # tests/cli's helpers: one job, one set of checks
    LOCKED_JOB,
    assert_one_at_a_time,
    job_events,
    parent_of,
    tenure,
    wait_dead,
    wait_events,
)

pytestmark = [pytest.mark.kubernetes, pytest.mark.cli]

TTL = "3"  # 2 loaded cores: a leader must not lose to a starved renewal before the cut
WAIT = 60.0


def test_one_job_at_a_time_through_a_proxy_cut_and_a_sigkill(
    kubernetes_cluster: Cluster, tmp_path: Path,
) -> None:
    cluster = kubernetes_cluster
    assert isinstance(cluster, KubernetesCluster)
    election = f"cron/nightly-{time.monotonic_ns()}"
    log, lock = tmp_path / "job.log", tmp_path / "job.lock"
    env = {**os.environ, "LOG": str(log), "LOCK": str(lock)}
    proxy = cluster.proxy()

    def run(url: str) -> subprocess.Popen[bytes]:
        return tenure("run", "--backend", url, "--election", election, "--ttl", TTL,
                      "--grace", "1", "--", sys.executable, "-c", LOCKED_JOB, env=env)

    cut_off = run(proxy.url)  # the first leader reaches the apiserver through the proxy
    runners = [cut_off]
    try:
        [first] = wait_events(log, lambda e: len(e) >= 1, WAIT)
        assert (first.kind, first.election) == ("start", election)
        runners += [run(cluster.url), run(cluster.url)]
        # The hold-out: longer than the TTL, a waiting candidate must not start meanwhile.
        time.sleep(1.5 * float(TTL))
        assert [e.kind for e in job_events(log)] == ["start"], job_events(log)
        assert cut_off.poll() is None

        proxy.cut()  # renewals fail: the job is stopped at the deadline, then a waiter leads
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > first.token,
                             WAIT)
        assert cut_off.wait(WAIT) == 75, cut_off.stderr.read()  # type: ignore[union-attr]
        assert ("term", first.token, first.pid) in [(e.kind, e.token, e.pid) for e in events]
        assert b"leadership lost" in cut_off.stderr.read()  # type: ignore[union-attr]

        second = events[-1]
        [runner] = [r for r in runners if r.pid == parent_of(second.pid)]
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        wait_dead(second.pid)  # the job dies with its tenure run (parent-death signal)
        events = wait_events(log, lambda e: e[-1].kind == "start" and e[-1].token > second.token,
                             WAIT)
        assert_one_at_a_time(events)
        assert len([e for e in events if e.kind == "start"]) == 3, events
    finally:
        proxy.heal()
        for proc in runners:
            proc.kill()
            proc.wait()
