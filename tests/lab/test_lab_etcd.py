"""etcd lab clusters: real servers, written and read through the pyetcd gRPC client,
under node kills, restarts, pauses, client-path cuts and peer isolation."""

from __future__ import annotations

import grpc
import pyetcd
import pytest
from pyetcd.exceptions import Etcd3Exception

from tenure.conformance.lab.cluster import Cluster, eventually
from tenure.conformance.lab.etcd import EtcdNode
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.ports import ephemeral_range

pytestmark = [pytest.mark.lab, pytest.mark.etcd]


def client(address: str, timeout: float = 2.0) -> pyetcd.MultiEndpointEtcd3Client:
    """A gRPC client of one member that retries it 0.2 s after a failure (pyetcd's
    default is to shun a failed endpoint for 300 s)."""
    host, port = address.rsplit(":", 1)
    endpoint = pyetcd.Endpoint(host, int(port), secure=False, time_retry=0.2)
    return pyetcd.MultiEndpointEtcd3Client(endpoints=[endpoint], timeout=timeout, failover=True)


def read(address: str, key: str) -> bytes | None:
    value, _ = client(address).get(key)
    return value  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def etcd3(lab_module: LabFactory) -> Cluster:
    cluster = lab_module.start("etcd", nodes=3)
    print(f"\netcd x3 started in {cluster.start_time:.2f} s: {cluster.url}")
    return cluster


def test_single_member_serves_writes_and_reads(lab: LabFactory) -> None:
    cluster = lab.start("etcd", nodes=1)
    print(f"\netcd x1 started in {cluster.start_time:.2f} s: {cluster.url}")
    assert cluster.url == f"etcd://{cluster.nodes[0].client_address}"
    c = client(cluster.nodes[0].client_address)
    c.put("greeting", "hello")
    assert read(cluster.nodes[0].client_address, "greeting") == b"hello"


def test_three_members_replicate_writes(etcd3: Cluster) -> None:
    client(etcd3.nodes[0].client_address).put("replicated", "yes")
    for node in etcd3.nodes:
        assert read(node.client_address, "replicated") == b"yes"


def test_member_ports_are_below_the_ephemeral_range(etcd3: Cluster) -> None:
    """A member binds its client and peer ports a moment after they are chosen, and
    the peer proxies bind port 0 meanwhile: one of them once took a member's client
    port ("bind: address already in use") and the cluster did not start."""
    low, _ = ephemeral_range()
    for node in etcd3.nodes:
        assert isinstance(node, EtcdNode)
        chosen = (node.client_port, node.peer_port)
        assert max(chosen) < low, f"{node.name}: ports {chosen} (ephemeral from {low})"


@pytest.mark.slow
def test_killed_member_leaves_a_serving_cluster_and_rejoins_on_restart(etcd3: Cluster) -> None:
    victim, survivor = etcd3.nodes[0], etcd3.nodes[1]
    victim.kill()
    assert not victim.running
    eventually(lambda: client(survivor.client_address).put("after-kill", "1"), 30,
               "the two remaining members to accept a write")
    assert read(etcd3.nodes[2].client_address, "after-kill") == b"1"

    victim.restart()
    assert eventually(lambda: read(victim.client_address, "after-kill"), 30,
                      "the restarted member to serve the write it missed") == b"1"


@pytest.mark.slow
def test_wiped_member_rejoins_as_a_new_member_and_catches_up(etcd3: Cluster) -> None:
    client(etcd3.nodes[0].client_address).put("before-wipe", "kept")
    etcd3.nodes[2].restart(wipe=True)
    assert eventually(lambda: read(etcd3.nodes[2].client_address, "before-wipe"), 30,
                      "the wiped member to catch up") == b"kept"
    etcd3.wait_serving()


def test_paused_member_answers_nothing_until_resumed(etcd3: Cluster) -> None:
    node = etcd3.nodes[1]
    node.pause()
    try:
        with pytest.raises(Etcd3Exception):
            client(node.client_address, timeout=0.5).get("anything")
    finally:
        node.resume()
    assert eventually(lambda: read(node.client_address, "replicated"), 30,
                      "the resumed member to serve") == b"yes"


def test_proxy_cut_is_a_connection_failure_and_heal_recovers(etcd3: Cluster) -> None:
    proxy = etcd3.proxy(node=0)
    assert proxy.url.startswith("etcd://127.0.0.1:")
    c = client(proxy.address, timeout=1.0)
    c.put("through-proxy", "1")
    proxy.cut()
    with pytest.raises(Etcd3Exception):
        c.put("through-proxy", "2")
    proxy.heal()
    eventually(lambda: c.put("through-proxy", "3"), 20, "the healed proxy to carry a write")
    assert read(etcd3.nodes[0].client_address, "through-proxy") == b"3"


@pytest.mark.slow
def test_isolated_member_cannot_serve_linearizable_reads_and_catches_up(etcd3: Cluster) -> None:
    etcd3.wait_serving()
    isolated = etcd3.nodes[2]
    with etcd3.isolated_node(2):
        eventually(lambda: client(etcd3.nodes[0].client_address).put("during-isolation", "x"),
                   30, "the majority side to accept a write")
        # The server gives up on the read itself ("context deadline exceeded"), which
        # pyetcd passes through as a plain gRPC error.
        with pytest.raises((Etcd3Exception, grpc.RpcError)):
            client(isolated.client_address, timeout=10).get("during-isolation")
    assert eventually(lambda: read(isolated.client_address, "during-isolation"), 30,
                      "the rejoined member to catch up") == b"x"
