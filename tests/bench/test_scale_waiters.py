"""Scale (b) runs its waiters in several worker processes, each connecting from its own
loopback address (a smoke test: the point is measured and its counters are read;
nothing here asserts a figure)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tenure.conformance.benchmarks import scale
from tenure.conformance.benchmarks.systems import store_hosts
from tenure.conformance.lab.fixtures import LabFactory


@pytest.mark.unit
def test_a_worker_bound_to_a_loopback_address_connects_from_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = ("import socket; from tenure.conformance.benchmarks.scale_worker import "
                "bind_source; bind_source('127.0.0.7'); "
                f"socket.create_connection(('127.0.0.1', {port}), timeout=10).close()")
        child = subprocess.Popen([sys.executable, "-c", code])
        server.settimeout(30)
        connection, peer = server.accept()
        connection.close()
        assert child.wait(timeout=30) == 0
    assert peer[0] == "127.0.0.7"


@pytest.mark.redis
def test_waiters_spread_over_processes_are_counted(
    lab: LabFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = lab.start("redis", nodes=1)
    monkeypatch.setitem(scale.WAITERS_PER_PROCESS, "redis", 3)
    row = scale.waiters_point("redis", cluster.url, store_hosts(cluster.url), 7, 2, 0.5)
    assert row.status == "ok", row.reason
    assert row.note == "waiters in 3 processes, each from its own loopback address"
    assert row.requests_per_change is not None and row.requests_per_change > 0
