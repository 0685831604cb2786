"""An idle etcd leader and waiter wake no thread of theirs, counted by the kernel.

Before: pyetcd's watch thread woke 10 times a second (a sync gRPC response iterator
polls every 0.1 s, grpc._common.wait with MAXIMUM_WAIT_TIMEOUT), gRPC's channel-spin
thread of the sync streams 5+ times a second, besides each stream's request consumer
and the keepalive watchdog: about a third of an idle candidate's CPU at TTL 2 s. The
watch and keepalive streams now run on grpc.aio in one loop thread per client
(adapters/etcd_streams.py), which sleeps until an event arrives. At TTL 60 s no
keepalive falls in the 2 s window, so every wake-up counted there is polling: the
threads the two clients started (voluntary context switches, /proc/self/task) wake
at most a few times, where the old code's watch thread alone woke ~20 times. ~3 s.
"""

from __future__ import annotations

import threading
import time

import pytest

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]

TTL = 60.0
"""Keepalives every 20 s (a waiter's every 27 s): none in the window."""
WINDOW = 2.0
MOST_WAKEUPS = 4
"""Wake-ups allowed in the window for all the clients' threads together (the old watch
thread alone: 2 x 10)."""


def wakeups(threads: list[threading.Thread]) -> dict[str, int]:
    """Voluntary context switches so far of each of ``threads`` (by name)."""
    found: dict[str, int] = {}
    for thread in threads:
        try:
            with open(f"/proc/self/task/{thread.native_id}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        found[f"{thread.name}/{thread.native_id}"] = int(line.split()[1])
        except OSError:
            pass  # ended
    return found


def test_an_idle_leader_and_waiter_poll_nothing(etcd_cluster: Cluster) -> None:
    before = set(threading.enumerate())
    name = f"wakeups-{time.monotonic_ns()}"
    with tenure.connect(etcd_cluster.url, ttl=TTL) as holder, \
            tenure.connect(etcd_cluster.url, ttl=TTL) as waiter:
        lead = holder.election(name).campaign(timeout=30)
        store = waiter.store
        assert isinstance(store, EtcdStore)
        won: list[tenure.Leadership] = []
        campaign = threading.Thread(
            target=lambda: won.append(waiter.election(name).campaign(timeout=60)),
            name="test-campaign")
        campaign.start()
        try:
            deadline = time.monotonic() + 30
            while store.watches_created < 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # polls the test's own counter only until the wait began
            assert store.watches_created == 1, "the waiter never watched its predecessor"
            time.sleep(0.3)  # the guard's creation and the watch's answer settle
            ours = [t for t in threading.enumerate()
                    if t not in before and t is not campaign]
            sent = (holder.store.keepalives, store.keepalives)  # type: ignore[attr-defined]
            start = wakeups(ours)
            time.sleep(WINDOW)  # the observation window itself
            end = wakeups(ours)
            assert (holder.store.keepalives, store.keepalives) == sent  # type: ignore[attr-defined]
            woke = {k: end[k] - start[k] for k in end if k in start}
            print(f"\nwake-ups in {WINDOW:g} s: {woke}")
            assert sum(woke.values()) <= MOST_WAKEUPS, woke
            assert not won
        finally:
            lead.resign()
            campaign.join(30)
        assert won, "the waiter did not lead after the resign (its watch fired nothing)"
        won[0].resign()
