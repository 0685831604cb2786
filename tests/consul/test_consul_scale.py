"""One client, many elections, on a real lab Consul: one guard per client (one thread,
one blocking query) however many leaderships it holds, exactly the taken keys reported
lost, waits beyond the fast lane sharing that watcher, and connections that stay far
below Consul's 200 per client address (``limits.http_max_conns_per_client``)."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import tenure
from tenure.adapters import consul_http
from tenure.adapters.consul import ConsulStore
from tenure.adapters.consul_http import BLOCK_WAIT, FAST_WAITS, POOL_SIZE, TXN_OPS
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster, eventually
from tenure.leadership import State

pytestmark = [pytest.mark.consul]

WORKERS = 8
"""Campaigns in flight at once: a client starting its elections at a realistic pace."""


def sockets() -> int:
    """Sockets this process has open (psutil is not a dependency)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def watch_threads() -> int:
    return sum(t.name == "tenure-consul-watch" for t in threading.enumerate())


def store_of(client: tenure.Client) -> ConsulStore:
    store = client.store
    assert isinstance(store, ConsulStore)
    return store


def campaign_all(client: tenure.Client, names: list[str]) -> list[tenure.Leadership]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda n: client.election(n).campaign(timeout=60), names))


def resign_all(leads: list[tenure.Leadership]) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda lead: lead.resign(), leads))


def folder_index(cluster: Cluster, client: tenure.Client, leads: list[tenure.Leadership]) -> int:
    """The Raft index of the last change (deletions included) that the guard of
    ``leads`` watches: under their common folder, as its blocking query sees it."""
    store = store_of(client)
    where = consul_http.folder(store._leader_key(lead.election) for lead in leads)
    got = requests.get(f"http://{cluster.nodes[0].client_address}/v1/kv/{where[:-1]}"
                       "?keys&separator=/", timeout=5)
    return int(got.headers["X-Consul-Index"])


def settled(client: tenure.Client, index: int) -> None:
    """Waits until the guard's blocking query waits from ``index`` or later: every
    check the changes up to ``index`` caused is done."""
    watcher = store_of(client).watcher

    def check() -> None:
        waiting = watcher.waiting_from
        assert waiting is not None and waiting >= index, (waiting, index)

    eventually(check, 30, "the guard to wait again")


def measure(client: tenure.Client, window: float) -> dict[str, float]:
    """What ``client`` costs over ``window`` seconds in which nothing changes."""
    store, keeper = store_of(client), client.keeper
    sent, renewals = store.http.sent, keeper.renewals + keeper.renewal_failures
    checks, started = store.watcher.checks, time.monotonic()
    time.sleep(window)  # the measured window itself, not a synchronisation
    spent = time.monotonic() - started
    total = store.http.sent - sent
    return {"threads": threading.active_count(), "sockets": sockets(),
            "checks": store.watcher.checks - checks,
            "requests_per_ttl": round(total / (spent / client.ttl), 2),
            "others": total - (keeper.renewals + keeper.renewal_failures - renewals)}


@pytest.mark.slow
def test_one_client_holds_10000_elections_with_fixed_threads_connections_and_traffic(
    consul_cluster: Cluster,
) -> None:
    ttl = 5.0  # renewals (TTL/6 apart) get 0.8 s each: slack for a busy shared machine
    before = sockets()
    tag = f"scale-{time.monotonic_ns()}"
    figures: dict[int, dict[str, float]] = {}
    with tenure.connect(consul_cluster.url, ttl=ttl) as client:
        leads: list[tenure.Leadership] = []
        try:
            for held, window in ((1, ttl), (100, ttl), (10_000, 3 * ttl)):
                leads += campaign_all(client, [f"{tag}/{i}" for i in range(len(leads), held)])
                settled(client, max(lead.token for lead in leads))
                figures[held] = measure(client, window)
                assert [lead.lost for lead in leads].count(True) == 0, figures
            print(f"\nconsul, one client: {figures}")
            # Held for 3 TTLs (the last window) with no loss; a leadership past its
            # deadline would read lost here.
            assert all(lead.state is State.HELD for lead in leads)
            for held, seen in figures.items():
                # No check ran (nothing changed), so the only traffic besides renewals is
                # the blocking query, sent again every BLOCK_WAIT s.
                assert seen["checks"] == 0, (held, seen)
                window = 3 * ttl if held == 10_000 else ttl
                assert seen["others"] <= math.ceil(window / BLOCK_WAIT) + 1, (held, seen)
                assert seen["sockets"] - before <= POOL_SIZE + 2, (held, seen)
            assert figures[10_000]["threads"] <= figures[1]["threads"], figures
            assert figures[100]["threads"] <= figures[1]["threads"], figures
            # flat: renewals (TTL/6 apart) and that one query, at 1 as at 10,000
            assert figures[10_000]["requests_per_ttl"] <= figures[1]["requests_per_ttl"] + 2
        finally:
            resign_all(leads)


def test_one_client_holds_300_elections_while_another_waits_in_all_of_them(
    consul_cluster: Cluster,
) -> None:
    """300 leaderships in one client and 300 waiting campaigns in another: every
    leadership survives 3 TTLs (it lost 299 of 300 when each had its own connection),
    the waiters keep at most FAST_WAITS connections of their own, and all of them
    lead once the first client resigns."""
    ttl = 4.0
    tag = f"many-{time.monotonic_ns()}"
    names = [f"{tag}/{i}" for i in range(300)]
    before = sockets()
    with tenure.connect(consul_cluster.url, ttl=ttl) as holder, \
            tenure.connect(consul_cluster.url, ttl=ttl) as waiter:
        leads = campaign_all(holder, names)
        lost = [lead for lead in leads if lead.lost]
        won: list[tenure.Leadership] = []
        campaigns = [threading.Thread(target=lambda n=name: won.append(
            waiter.election(n).campaign(timeout=60))) for name in names]
        for thread in campaigns:
            thread.start()
        queued = f"http://{consul_cluster.nodes[0].client_address}/v1/kv/tenure/{tag}/?keys"
        eventually(lambda: _assert_count(requests.get(queued, timeout=5).json(), 900),
                   60, "all 300 waiters to queue")  # leader + 2 queue keys each
        started = time.monotonic()
        peak_sockets, peak_watches = 0, 0
        while time.monotonic() - started < 3 * ttl:  # sampled while nothing changes
            peak_sockets = max(peak_sockets, sockets() - before)
            peak_watches = max(peak_watches, watch_threads())
            time.sleep(0.1)
        print(f"\nconsul, 300 held + 300 waiting: {peak_sockets} sockets, "
              f"{peak_watches} own-query waits")
        assert not lost and not any(lead.lost for lead in leads)
        assert not won
        # two clients: each POOL_SIZE + renewals + its watcher, the waiter's fast lane
        assert peak_sockets <= 2 * (POOL_SIZE + 2) + FAST_WAITS, peak_sockets
        assert peak_watches <= FAST_WAITS
        resign_all(leads)
        for thread in campaigns:
            thread.join(60)
        assert len(won) == 300 and all(not lead.lost for lead in won)
        assert {lead.election for lead in won} == set(names)
        resign_all(won)


def _assert_count(items: list[str], count: int) -> None:
    assert len(items) == count, len(items)


@pytest.mark.parametrize("held", [3, TXN_OPS + 6])
def test_the_one_guard_reports_exactly_the_leader_keys_taken_away(
    consul_cluster: Cluster, held: int,
) -> None:
    """Up to TXN_OPS keys the guard checks by one transaction, beyond by one recursive
    read; either way only the keys deleted (or taken) are reported lost."""
    tag = f"taken-{time.monotonic_ns()}"
    api = f"http://{consul_cluster.nodes[0].client_address}"
    with tenure.connect(consul_cluster.url, ttl=5) as client:
        losses: list[str] = []
        leads = [client.election(f"{tag}/{i}").campaign(
            timeout=10, on_lost=lambda lead, _r: losses.append(lead.election))
            for i in range(held)]
        store = store_of(client)
        assert sum(t.name == "tenure-consul-watcher" for t in threading.enumerate()) >= 1
        settled(client, max(lead.token for lead in leads))
        checks = store.watcher.checks
        taken = [leads[0], leads[-1]]
        for lead in taken:
            requests.delete(f"{api}/v1/kv/{store._leader_key(lead.election)}",
                            timeout=5).raise_for_status()
        eventually(lambda: _assert_count(losses, 2), 10, "the two losses")
        assert sorted(losses) == sorted(lead.election for lead in taken)
        assert store.watcher.checks > checks
        held_keys = f"{api}/v1/kv/tenure/{tag}/?keys"  # the lost ones withdrawn
        eventually(lambda: _assert_count(requests.get(held_keys, timeout=5).json(),
                                         2 * (held - 2)), 10, "the lost entries to go")
        rest = leads[1:-1]
        settled(client, folder_index(consul_cluster, client, rest))  # checked since
        assert not any(lead.lost for lead in rest)
        assert [lead for lead in leads if lead.lost] == taken
        resign_all(rest)


def test_a_shared_wait_fires_on_a_change_and_closes_at_once(consul_cluster: Cluster) -> None:
    url, _ = parse_backend_url(consul_cluster.url)
    store = ConsulStore.from_url(url)
    api = f"http://{consul_cluster.nodes[0].client_address}"
    key = f"tenure/shared/{time.monotonic_ns()}"
    try:
        requests.put(f"{api}/v1/kv/{key}", data=b"1", timeout=5).raise_for_status()
        index, entries = store.http.get(key)
        seen = int(entries[0]["ModifyIndex"])
        with store.watcher.watch(key, seen, index) as change:
            assert not change.wait(0.5)
            requests.put(f"{api}/v1/kv/{key}", data=b"2", timeout=5).raise_for_status()
            assert change.wait(5)
            assert change.wait(0)  # and from then on
        absent = f"{key}-absent"
        index = store.http.get(absent)[0]
        with store.watcher.watch(absent, 0, index) as created:
            assert not created.wait(0.5)
            requests.put(f"{api}/v1/kv/{absent}", data=b"x", timeout=5).raise_for_status()
            assert created.wait(5)
        idle = store.watcher.watch(key, store.http.get(key)[0], store.http.get(key)[0])
        assert not idle.wait(0.2)
        idle.close()
        assert idle.entry not in store.watcher._entries  # closed: no longer checked
    finally:
        store.close()
    assert not idle.wait(0)


def test_waits_beyond_the_fast_lane_share_the_watcher(consul_cluster: Cluster) -> None:
    url, _ = parse_backend_url(consul_cluster.url)
    store = ConsulStore.from_url(url)
    key = f"tenure/lanes/{time.monotonic_ns()}"
    try:
        index = store.http.get(key)[0]
        fast = [store.watcher.signal(key, 0, index) for _ in range(FAST_WAITS)]
        shared = store.watcher.signal(key, 0, index)
        assert all(isinstance(s, consul_http.KeyWatch) for s in fast)
        assert isinstance(shared, consul_http.SharedWait)
        fast[0].close()
        again = store.watcher.signal(key, 0, index)
        assert isinstance(again, consul_http.KeyWatch)
        for signal in (*fast, shared, again):
            signal.close()
    finally:
        store.close()
