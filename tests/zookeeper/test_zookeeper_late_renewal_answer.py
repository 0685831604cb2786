"""A ZooKeeper server that answers a renewal's sync late but within the renewal's own
timeout (stalled 0.4 s; the touch waits TTL / 4 = 0.5 s at TTL 2 s) must not cost the
connection. Since 66cf675 the renewal marks kazoo's ping outstanding, so kazoo's next
read-timeout check (TTL / 3 minus up to 0.4 s jitter after the send) drops the healthy
connection: the renewal fails with ConnectionLoss, the session goes SUSPENDED and
reconnects (once, of 6 runs, the leadership was lost at its deadline). FAILS on
66cf675..ba71f55 (1-3 drops in 4 stalls, 6 runs); the pre-66cf675 behaviour (kazoo's own
pings, sync_async; emulated by the reviewer's script) dropped none. ~5 s."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

import tenure
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.zookeeper]

STALLS = 4
STALL = 0.4


class Drops(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Connection dropped" in record.getMessage():
            self.seen.append(record.getMessage())


def test_a_late_but_timely_renewal_answer_keeps_the_connection(
        zookeeper_cluster: Cluster) -> None:
    pid = zookeeper_cluster.nodes[0].pid
    assert pid is not None
    drops = Drops()
    kazoo_log = logging.getLogger("kazoo")
    kazoo_log.addHandler(drops)
    try:
        with tenure.connect(zookeeper_cluster.url, ttl=2) as client:
            store = client.store
            assert isinstance(store, ZooKeeperStore)
            lead = client.election(f"review/slow-sync/{time.monotonic_ns()}").campaign(
                timeout=30)
            conn = store._conn
            real = conn.touch
            stalled: list[float] = []
            done = threading.Event()

            def touch(zk, timeout=None):  # type: ignore[no-untyped-def]
                if len(stalled) < STALLS:
                    stalled.append(time.monotonic())
                    os.kill(pid, signal.SIGSTOP)
                    threading.Timer(STALL, os.kill, args=(pid, signal.SIGCONT)).start()
                elif len(stalled) == STALLS:
                    done.set()
                return real(zk, timeout)

            conn.touch = touch  # type: ignore[method-assign]
            try:
                assert done.wait(30)
            finally:
                conn.touch = real  # type: ignore[method-assign]
                os.kill(pid, signal.SIGCONT)
            lost = lead.lost_reason if lead.lost else ""
            lead.resign()
    finally:
        kazoo_log.removeHandler(drops)
        os.kill(pid, signal.SIGCONT)
    assert (drops.seen, lost) == ([], ""), \
        f"{len(drops.seen)} healthy connections dropped in {STALLS} stalls; lost: {lost!r}"
