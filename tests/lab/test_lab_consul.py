"""Consul lab clusters: real servers (1.14, built by scripts/install-stores), written and
read through py-consul, under server kills, restarts, pauses and client-path cuts."""

from __future__ import annotations

import time

import consul
import pytest
import requests

from tenure.conformance.lab.cluster import Cluster, eventually
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.consul]


def client(address: str, timeout: float = 3.0) -> consul.Consul:
    host, port = address.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port), connections_timeout=timeout)


def read(address: str, key: str, consistency: str = "consistent") -> bytes | None:
    """``consistency="stale"`` reads the server's own copy (shows it caught up);
    the default goes through the leader."""
    _, item = client(address).kv.get(key, consistency=consistency)
    return None if item is None else item["Value"]  # type: ignore[no-any-return]


def read_until(address: str, key: str, want: bytes, what: str) -> None:
    """Polls this server's own copy (a stale read) until it holds ``want``."""

    def check() -> None:
        got = read(address, key, "stale")
        if got != want:
            raise AssertionError(f"{key} is {got!r} on {address}, want {want!r}")

    eventually(check, 30, what)


def put(address: str, key: str, value: bytes, timeout: float = 3.0) -> None:
    assert client(address, timeout).kv.put(key, value) is True


@pytest.fixture(scope="module")
def consul3(lab_module: LabFactory) -> Cluster:
    cluster = lab_module.start("consul", nodes=3)
    print(f"\nconsul x3 started in {cluster.start_time:.2f} s: {cluster.url}")
    return cluster


def test_single_server_serves_writes_reads_and_short_sessions(lab: LabFactory) -> None:
    cluster = lab.start("consul", nodes=1)
    print(f"\nconsul x1 started in {cluster.start_time:.2f} s: {cluster.url}")
    address = cluster.nodes[0].client_address
    assert cluster.url == f"consul://{address}"
    put(address, "greeting", b"hello")
    assert read(address, "greeting") == b"hello"
    # session_ttl_min = "500ms": a 500 ms session is accepted (the default floor is 10 s)
    # and honoured: invalidated (its key deleted) after 2 x TTL, never before the TTL.
    # Raw HTTP: py-consul itself asserts ttl >= 10 before sending.
    created = time.monotonic()
    answer = requests.put(f"http://{address}/v1/session/create",
                          json={"TTL": "500ms", "LockDelay": "0s", "Behavior": "delete"},
                          timeout=5)
    assert answer.status_code == 200, answer.text
    session = answer.json()["ID"]
    locked = requests.put(f"http://{address}/v1/kv/short-lived?acquire={session}", data=b"x",
                          timeout=5)
    assert locked.json() is True
    while read(address, "short-lived") is not None:
        assert time.monotonic() - created < 5, "the 500 ms session was never invalidated"
        time.sleep(0.01)
    assert 0.5 <= time.monotonic() - created <= 1.5


def test_three_servers_elect_a_leader_and_replicate(consul3: Cluster) -> None:
    peers = client(consul3.nodes[0].client_address).status.peers()
    assert len(peers) == 3
    put(consul3.nodes[0].client_address, "replicated", b"yes")
    for node in consul3.nodes:
        assert read(node.client_address, "replicated") == b"yes"


@pytest.mark.slow
def test_killed_server_leaves_a_serving_cluster_and_rejoins_on_restart(consul3: Cluster) -> None:
    leader_address = client(consul3.nodes[0].client_address).status.leader()
    victim = next(n for n in consul3.nodes
                  if getattr(n, "server_port", None) == int(leader_address.rsplit(":", 1)[1]))
    survivor = next(n for n in consul3.nodes if n is not victim)
    victim.kill()
    eventually(lambda: put(survivor.client_address, "after-kill", b"1"), 30,
               "the two remaining servers to elect a leader and accept a write")
    victim.restart()
    consul3.wait_serving()
    read_until(victim.client_address, "after-kill", b"1",
               "the restarted server to serve the write it missed")


@pytest.mark.slow
def test_wiped_server_rejoins_and_catches_up(consul3: Cluster) -> None:
    put(consul3.nodes[0].client_address, "before-wipe", b"kept")
    consul3.nodes[2].restart(wipe=True)
    consul3.wait_serving()
    read_until(consul3.nodes[2].client_address, "before-wipe", b"kept",
               "the wiped server to catch up")


def test_paused_server_answers_nothing_until_resumed(consul3: Cluster) -> None:
    node = consul3.nodes[1]
    node.pause()
    try:
        with pytest.raises(requests.exceptions.RequestException):
            client(node.client_address, timeout=0.5).kv.get("replicated")
    finally:
        node.resume()
    assert eventually(lambda: read(node.client_address, "replicated"), 30,
                      "the resumed server to serve") == b"yes"


def test_proxy_cut_is_a_connection_failure_and_heal_recovers(consul3: Cluster) -> None:
    proxy = consul3.proxy(node=0)
    assert proxy.url == f"consul://{proxy.address}"
    put(proxy.address, "through-proxy", b"1")
    proxy.cut()
    with pytest.raises(requests.exceptions.ConnectionError):
        put(proxy.address, "through-proxy", b"2")
    proxy.heal()
    eventually(lambda: put(proxy.address, "through-proxy", b"3"), 20,
               "the healed proxy to carry a write")
    assert read(consul3.nodes[0].client_address, "through-proxy") == b"3"
