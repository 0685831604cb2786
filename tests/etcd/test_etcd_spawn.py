"""Processes started while the etcd client's gRPC threads are busy: ``tenure run``'s
deadline keeper and command once died of SIGABRT before their exec, because they were
started by fork() (a ``preexec_fn``) and gRPC's fork handlers ran in the child. They
are now started with vfork + exec (tenure.childproc, tenure.guard_exec)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tenure
from tenure.childproc import DeadlineKeeper, spawn_guarded
from tenure.conformance.lab.cluster import Cluster

pytestmark = pytest.mark.etcd

STARTS = 30
"""Keeper + command starts under busy gRPC threads (before the fix, about one in
twenty keepers died, and the busy threads' streams were reset)."""


def test_the_keeper_and_its_command_start_while_etcd_grpc_threads_are_busy(
    etcd_cluster: Cluster, capfd: pytest.CaptureFixture[str],
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    with tenure.connect(etcd_cluster.url, ttl=2) as client:

        def busy(index: int) -> None:
            election = client.election(f"spawn/busy{index}")
            try:
                while not stop.is_set():
                    election.leader()
            except BaseException as exc:  # reported below: a reset stream is a failure
                errors.append(exc)

        threads = [threading.Thread(target=busy, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(STARTS):
                keeper = DeadlineKeeper.start(time.monotonic() + 30, 1.0)
                child = keeper.spawn([sys.executable, "-c", "pass"])
                assert child.wait(timeout=30) == 0
                assert keeper.close() == ["ready", "exited"]
                assert keeper.process.returncode == 0
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert not errors, f"the etcd client's calls failed meanwhile: {errors[:3]}"
    assert "fork" not in capfd.readouterr().err  # gRPC's fork handlers did not run


def test_guarded_processes_are_started_without_forking_the_caller() -> None:
    """Python's at-fork hooks run at every fork() it makes for a child (``os.fork``, a
    ``subprocess`` ``preexec_fn``); none may run when a keeper and a command start. The
    control: one ``preexec_fn`` start counts."""
    script = """
import os, subprocess, sys, time
from tenure.childproc import DeadlineKeeper, spawn_guarded
forks = []
os.register_at_fork(before=lambda: forks.append(1))
spawn_guarded(["true"]).wait()
keeper = DeadlineKeeper.start(time.monotonic() + 30, 1.0)
child = keeper.spawn(["true"])
keeper.close()
child.wait()
print(len(forks))
subprocess.Popen(["true"], preexec_fn=lambda: None).wait()
print(len(forks))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]


def test_a_command_that_cannot_be_executed_raises_what_popen_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-command-here"):
        spawn_guarded(["no-such-command-here"])
    not_executable = tmp_path / "job.sh"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    with pytest.raises(PermissionError):
        spawn_guarded([str(not_executable)])
