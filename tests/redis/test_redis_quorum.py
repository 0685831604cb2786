"""The Redis quorum guard on real instances: a single instance says it is not
partition-safe, a client cut from the majority steps down by its deadline while the
majority side elects, renewal costs one command per instance whatever the number of
elections, and an expired session is never revived."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import pytest
import redis

import tenure
from tenure.adapters.redis import RedisStore
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]

TTL = 1.0


def admin(address: str) -> redis.Redis:
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), socket_timeout=5)


def test_a_single_instance_is_reported_not_partition_safe(
    redis_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tenure"):
        tenure.connect(redis_cluster.url, ttl=TTL).close()
    assert "not partition-safe" in caplog.text
    shown = subprocess.run(
        [sys.executable, "-m", "tenure.cli.main", "leader", "--backend", redis_cluster.url,
         "--election", "single/instance", "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    record = json.loads(shown.stdout)
    assert record["partition_safe"] is False
    assert "not partition-safe" in record["warning"]
    assert "not partition-safe" in shown.stderr  # the warning at connect, on the CLI too


@pytest.mark.slow
def test_a_client_cut_from_the_majority_steps_down_and_the_majority_elects(
    lab: LabFactory,
) -> None:
    cluster = lab.start("redis", nodes=3)
    proxies = [cluster.proxy(node=0), cluster.proxy(node=1)]
    # The cut-off client reaches instances 0 and 1 through proxies and 2 directly.
    cut_url = "redis://" + ",".join([p.address for p in proxies]
                                     + [cluster.nodes[2].client_address])
    with tenure.connect(cut_url, ttl=TTL, candidate_id="cut") as cut, \
            tenure.connect(cluster.url, ttl=TTL, candidate_id="majority") as majority:
        lost_at: list[float] = []
        lead = cut.election("cut/majority").campaign(
            timeout=10, on_lost=lambda _l, _r: lost_at.append(time.monotonic()))
        won: list[tuple[float, int]] = []

        def campaign() -> None:
            second = majority.election("cut/majority").campaign(timeout=30)
            won.append((time.monotonic(), second.token))

        waiter = threading.Thread(target=campaign)
        waiter.start()
        for proxy in proxies:
            proxy.cut(blackhole=True)
        cut_at = time.monotonic()
        last_deadline = lead.deadline
        assert lead.wait_lost(timeout=TTL + 5)
        waiter.join(timeout=30)
        for proxy in proxies:
            proxy.heal()
    assert lost_at and lost_at[0] - cut_at <= TTL + 0.5
    assert lost_at[0] <= max(last_deadline, cut_at + TTL) + 0.5
    assert won and won[0][0] > lost_at[0]  # S1: the majority side elects only after
    assert won[0][1] > lead.token


MANY_TTL = 6.0
"""TTL of the thousand-election client: at 1 s its renewals, every 0.33 s, were starved
past the deadline at a load average of ~50 and leaderships were lost."""
RENEWALS = 3


@pytest.mark.slow
def test_renewal_costs_one_command_per_instance_for_a_thousand_elections(
    lab: LabFactory,
) -> None:
    """Counted: each instance's PEXPIRE calls are bracketed by the keeper's renewal
    count read around the resets and around the snapshots (one renewal may be in
    flight at either end: the renewer sends one at a time)."""
    cluster = lab.start("redis", nodes=3)
    admins = [admin(node.client_address) for node in cluster.nodes]
    with tenure.connect(cluster.url, ttl=MANY_TTL) as client:
        leaderships = [client.election(f"many/{i}").campaign(timeout=30) for i in range(1000)]
        keeper = client.keeper
        before_reset = keeper.renewals
        for a in admins:
            a.config_resetstat()
        after_reset = keeper.renewals
        deadline = time.monotonic() + 10 * RENEWALS * MANY_TTL / 3
        while keeper.renewals < after_reset + RENEWALS:
            assert time.monotonic() < deadline, f"{RENEWALS} renewals did not come"
            time.sleep(0.05)
        before_stats = keeper.renewals
        stats = [a.info("commandstats") for a in admins]
        after_stats = keeper.renewals
        assert all(not lead.lost for lead in leaderships)
    for per_instance in stats:
        calls = {name: s["calls"] for name, s in per_instance.items()
                 if not name.startswith(("cmdstat_config", "cmdstat_info"))}
        assert set(calls) == {"cmdstat_pexpire"}, calls
        bounds = (before_stats - after_reset - 1, after_stats - before_reset + 1)
        assert bounds[0] <= calls["cmdstat_pexpire"] <= bounds[1], (calls, bounds)


def test_renewal_never_revives_an_expired_session(redis_cluster: Cluster) -> None:
    url = redis_cluster.url
    store = tenure.connect(url, ttl=TTL).store
    assert isinstance(store, RedisStore)
    try:
        store.open_session(TTL)
        key = store._key("session", store._sid)
        r = admin(redis_cluster.nodes[0].client_address)
        assert r.pttl(key) > 0
        r.delete(key)  # as if it had expired
        with pytest.raises(tenure.SessionExpired):
            store.renew_session(frozenset())
        assert r.exists(key) == 0
    finally:
        store.close()
