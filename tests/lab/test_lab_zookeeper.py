"""ZooKeeper lab clusters: real servers, written and read through kazoo, under server
kills, restarts, pauses, client-path cuts and peer isolation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kazoo.client import KazooClient, KazooState

from tenure.conformance.lab.cluster import Cluster, eventually, wait_until
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.ports import ephemeral_range
from tenure.conformance.lab.zookeeper import ZooKeeperNode

pytestmark = [pytest.mark.lab, pytest.mark.zookeeper]


@contextmanager
def kazoo(hosts: str, session_timeout: float = 2.0) -> Iterator[KazooClient]:
    """A started kazoo client that retries its connection forever, stopped on exit."""
    client = KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 0.5},
    )
    client.start(timeout=60)  # a store election after a kill can take long on loaded cores
    try:
        yield client
    finally:
        client.stop()
        client.close()


def read(address: str, path: str) -> bytes:
    with kazoo(address) as client:
        client.sync(path)
        data: bytes = client.get(path)[0]
        return data


@pytest.fixture(scope="module")
def zk3(lab_module: LabFactory) -> Cluster:
    cluster = lab_module.start("zookeeper", nodes=3)
    print(f"\nzookeeper x3 started in {cluster.start_time:.2f} s: {cluster.url}")
    return cluster


def modes(cluster: Cluster) -> list[str]:
    return [n.mode() for n in cluster.nodes if isinstance(n, ZooKeeperNode)]


def test_standalone_server_serves_writes_and_reads(lab: LabFactory) -> None:
    cluster = lab.start("zookeeper", nodes=1)
    print(f"\nzookeeper x1 started in {cluster.start_time:.2f} s: {cluster.url}")
    assert cluster.url == f"zookeeper://{cluster.nodes[0].client_address}"
    with kazoo(cluster.nodes[0].client_address) as client:
        client.create("/greeting", b"hello")
        assert client.get("/greeting")[0] == b"hello"
    assert modes(cluster) == ["standalone"]


def test_ensemble_has_one_leader_and_replicates(zk3: Cluster) -> None:
    assert sorted(modes(zk3)) == ["follower", "follower", "leader"]
    with kazoo(zk3.nodes[0].client_address) as client:
        client.create("/replicated", b"yes")
    for node in zk3.nodes:
        assert read(node.client_address, "/replicated") == b"yes"


def test_ensemble_ports_are_below_the_ephemeral_range(zk3: Cluster) -> None:
    """A leader binds its quorum port late, and restarted servers rebind theirs: a port
    the kernel may hand out as a source port meanwhile was once taken by a peer's
    connection, and the new leader could not serve for minutes."""
    low, _ = ephemeral_range()
    for node in zk3.nodes:
        assert isinstance(node, ZooKeeperNode)
        ports = (node.client_port, node.quorum_port, node.election_port)
        assert max(ports) < low, f"{node.name}: ports {ports} (ephemeral from {low})"


@pytest.mark.slow
def test_killed_server_leaves_a_serving_ensemble_and_rejoins_on_restart(zk3: Cluster) -> None:
    leader = next(n for n in zk3.nodes if isinstance(n, ZooKeeperNode) and n.mode() == "leader")
    others = [n for n in zk3.nodes if n is not leader]
    leader.kill()
    try:
        with kazoo(others[0].client_address) as client:
            eventually(lambda: client.create("/after-kill", b"1"), 30,
                       "the two remaining servers to elect a leader and accept a write")
    finally:  # the ensemble is shared by the module's later tests
        leader.restart()
        zk3.wait_serving()
    assert eventually(lambda: read(leader.client_address, "/after-kill"), 30,
                      "the restarted server to serve the write it missed") == b"1"


@pytest.mark.slow
def test_wiped_server_rejoins_and_catches_up(zk3: Cluster) -> None:
    with kazoo(zk3.nodes[0].client_address) as client:
        client.create("/before-wipe", b"kept")
    zk3.nodes[2].restart(wipe=True)
    zk3.wait_serving()
    assert read(zk3.nodes[2].client_address, "/before-wipe") == b"kept"


def test_paused_server_suspends_its_clients_until_resumed(zk3: Cluster) -> None:
    node = zk3.nodes[1]
    states: list[str] = []
    with kazoo(node.client_address) as client:
        client.add_listener(states.append)
        node.pause()
        try:
            wait_until(lambda: KazooState.SUSPENDED in states, 15,
                       "kazoo to see the paused server as a lost connection")
        finally:
            node.resume()
        wait_until(lambda: client.connected, 30, "kazoo to reconnect to the resumed server")
        assert client.exists("/") is not None


def test_proxy_cut_is_a_connection_failure_and_heal_recovers(zk3: Cluster) -> None:
    proxy = zk3.proxy(node=0)
    states: list[str] = []
    with kazoo(proxy.address, session_timeout=4.0) as client:
        client.add_listener(states.append)
        client.ensure_path("/through-proxy")
        proxy.cut()
        wait_until(lambda: KazooState.SUSPENDED in states, 15,
                   "kazoo to see the cut as a lost connection")
        proxy.heal()
        wait_until(lambda: client.connected, 30, "kazoo to reconnect through the healed proxy")
        client.set("/through-proxy", b"3")
        assert client.get("/through-proxy")[0] == b"3"


@pytest.mark.slow
def test_isolated_server_stops_serving_and_catches_up_on_rejoin(zk3: Cluster) -> None:
    zk3.wait_serving()
    index = next(i for i, n in enumerate(zk3.nodes)
                 if isinstance(n, ZooKeeperNode) and n.mode() == "follower")
    isolated = zk3.nodes[index]
    assert isinstance(isolated, ZooKeeperNode)
    other = zk3.nodes[(index + 1) % 3]
    with zk3.isolated_node(index):
        wait_until(lambda: not _serves(isolated), 30, "the isolated server to stop serving")
        with kazoo(other.client_address) as client:
            eventually(lambda: client.create("/during-isolation", b"x"), 30,
                       "the majority side to accept a write")
    zk3.wait_serving()
    assert eventually(lambda: read(isolated.client_address, "/during-isolation"), 30,
                      "the rejoined server to catch up") == b"x"


def _serves(node: ZooKeeperNode) -> bool:
    try:
        return node.serves()
    except Exception:
        return False
