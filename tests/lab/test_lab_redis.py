"""Redis lab clusters: 1 or 3 independent instances, written and read through redis-py,
under instance kills, restarts (with and without AOF), pauses and client-path cuts."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tenure.conformance.lab.cluster import Cluster, LabError, eventually
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.redis]


def client(address: str, timeout: float = 2.0) -> redis.Redis:
    host, port = address.rsplit(":", 1)
    # No client-side retries: a fault must show as the first call's error.
    return redis.Redis(host=host, port=int(port), socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


@pytest.fixture(scope="module")
def redis3(lab_module: LabFactory) -> Cluster:
    cluster = lab_module.start("redis", nodes=3, persistence=True)
    print(f"\nredis x3 (AOF) started in {cluster.start_time:.2f} s: {cluster.url}")
    return cluster


def test_single_instance_serves_writes_and_reads(lab: LabFactory) -> None:
    cluster = lab.start("redis", nodes=1)
    print(f"\nredis x1 started in {cluster.start_time:.2f} s: {cluster.url}")
    address = cluster.nodes[0].client_address
    assert cluster.url == f"redis://{address}"
    client(address).set("greeting", "hello")
    assert client(address).get("greeting") == b"hello"


def test_three_instances_are_independent(redis3: Cluster) -> None:
    client(redis3.nodes[0].client_address).set("only-on-first", "1")
    assert client(redis3.nodes[1].client_address).get("only-on-first") is None
    assert redis3.url == "redis://" + ",".join(n.client_address for n in redis3.nodes)


def test_killed_instance_leaves_the_others_serving_and_restarts_with_its_aof(
    redis3: Cluster,
) -> None:
    victim = redis3.nodes[0]
    client(victim.client_address).set("durable", "yes")
    victim.kill()
    with pytest.raises(redis.ConnectionError):
        client(victim.client_address).ping()
    for node in redis3.nodes[1:]:
        assert client(node.client_address).ping()
    victim.restart()
    assert client(victim.client_address).get("durable") == b"yes"
    victim.restart(wipe=True)
    assert client(victim.client_address).get("durable") is None


def test_instance_without_persistence_restarts_empty(lab: LabFactory) -> None:
    cluster = lab.start("redis", nodes=1)
    node = cluster.nodes[0]
    client(node.client_address).set("volatile", "1")
    node.restart()
    assert client(node.client_address).get("volatile") is None


def test_paused_instance_times_out_until_resumed(redis3: Cluster) -> None:
    node = redis3.nodes[1]
    node.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            client(node.client_address, timeout=0.3).ping()
    finally:
        node.resume()
    assert eventually(lambda: client(node.client_address).ping(), 10,
                      "the resumed instance to answer")


def test_proxy_cut_is_a_connection_failure_and_heal_recovers(redis3: Cluster) -> None:
    proxy = redis3.proxy()
    assert proxy.url == "redis://" + ",".join(p.address for p in proxy.proxies)
    c = client(proxy.address)
    c.set("through-proxy", "1")
    proxy.cut()
    with pytest.raises(redis.ConnectionError):
        c.set("through-proxy", "2")
    proxy.heal()
    eventually(lambda: c.set("through-proxy", "3"), 10, "the healed proxy to carry a write")
    assert client(redis3.nodes[0].client_address).get("through-proxy") == b"3"


def test_proxy_latency_delays_every_answer(redis3: Cluster) -> None:
    proxy = redis3.proxy(node=2)
    c = client(proxy.address)
    c.ping()
    proxy.latency(300)
    with pytest.raises(redis.TimeoutError):
        client(proxy.address, timeout=0.2).ping()
    assert client(proxy.address, timeout=2).ping()
    proxy.latency(0)


def test_independent_instances_have_no_peers_to_isolate(redis3: Cluster) -> None:
    with pytest.raises(LabError, match="not supported"):
        redis3.isolate(1)
