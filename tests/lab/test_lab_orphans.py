"""No store process outlives the Python process that started it: not on Ctrl-C, not on
SIGKILL (the kernel's parent-death signal), not on a normal exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tenure.conformance.lab.cluster import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.redis, pytest.mark.etcd, pytest.mark.zookeeper]

CHILD = """
import json, sys, threading, time
from tenure.conformance.lab import start_cluster

def start_in_short_lived_thread(out):
    # Started from a thread that ends at once: the parent-death signal must still wait
    # for the whole process (spawns happen on a long-lived thread).
    out.append(start_cluster("zookeeper", nodes=1))

clusters = [start_cluster("redis", nodes=3), start_cluster("etcd", nodes=1)]
t = threading.Thread(target=start_in_short_lived_thread, args=(clusters,))
t.start(); t.join()
print(json.dumps([n.pid for c in clusters for n in c.nodes]), flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
while True:
    time.sleep(1)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "ctrl-c", "exit"])
def test_store_processes_die_with_their_parent(how: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the child process started no cluster"
        pids: list[int] = json.loads(line)
        assert len(pids) == 5
        if how == "exit":
            wait_until(lambda: child.poll() is not None, 30, "the child to exit")
        else:
            wait_until(lambda: all(alive(p) for p in pids), 10, "the stores to run")
            # Still running the moment after the thread that spawned zookeeper ended.
            assert all(alive(p) for p in pids)
            child.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
        wait_until(lambda: not any(alive(p) for p in pids), 30,
                   f"every store process to die after the parent's {how}")
    finally:
        child.kill()
        child.wait()


def test_check_orphans_script_finds_none_of_ours_running() -> None:
    """scripts/check-orphans (also run by scripts/test after pytest) reports a store
    process whose parent is gone; with our clusters reaped there is none."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([str(root / "scripts" / "check-orphans")], capture_output=True,
                            text=True, env=dict(os.environ), timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
