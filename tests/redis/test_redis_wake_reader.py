"""The direct wake reader (:class:`tenure.adapters.redis_quorum.DirectReader`) on a
real instance: one subscription per instance survives a first subscription that
outlived start()'s wait. Each test < 1 s."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tenure.adapters import redis_quorum as quorum
from tenure.conformance.lab.cluster import Cluster, wait_until

pytestmark = [pytest.mark.redis]


def instance(cluster: Cluster) -> quorum.Instance[None]:
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    return quorum.Instance(host, int(port), 1.0, {}, lambda client: None)


def test_a_first_subscription_landing_after_start_gave_up_is_closed_not_kept_twice(
    redis_cluster: Cluster,
) -> None:
    inst = instance(redis_cluster)
    channel = f"test:wake:{time.monotonic_ns()}"
    made = inst.client.pubsub
    calls: list[Any] = []

    def pubsub() -> Any:
        p = made()
        calls.append(p)
        if len(calls) == 1:  # the first try is slow: start() gives up on it
            subscribe = p.subscribe

            def slow(*args: Any) -> Any:
                time.sleep(0.3)
                return subscribe(*args)

            p.subscribe = slow
        return p

    inst.client.pubsub = pubsub  # type: ignore[method-assign]
    bell, stop = quorum.Bell(), threading.Event()
    reader = quorum.DirectReader(bell, "wake", quorum.Feed(channel, direct=True), [inst],
                                 stop)
    pool = ThreadPoolExecutor(2)
    try:
        reader.start(pool, 0.05)
        wait_until(lambda: len(calls) == 2, 5, "the resubscription ran")
        pool.shutdown(wait=True)  # the slow first try has ended too
        wait_until(lambda: not reader._fixing, 5, "the resubscription ended")
        admin = redis.Redis(host=inst.client.connection_pool.connection_kwargs["host"],
                            port=inst.client.connection_pool.connection_kwargs["port"])
        assert admin.pubsub_numsub(channel) == [(channel.encode(), 1)]
        kept = reader._subs[0]
        assert kept is not None
        assert [p.connection is None for p in calls].count(True) == 1  # the other: closed
        assert kept.connection is not None
    finally:
        stop.set()
        reader.close()
        inst.client.close()
