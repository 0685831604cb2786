"""Lab clusters whose nodes each run in their own network namespace, and what each store
says about its own leader and peers (the evidence that a fault happened).

    with NetLab("etcd", nodes=3) as net:
        net.cluster.url                   # etcd://10.213.7.1:p1,10.213.7.2:p2,...
        net.faults.isolate("etcd1", net.labels)
        net.store_leader()                # index of the node the store calls its leader

Backends: etcd, Consul, Redis and ZooKeeper start inside namespaces through the lab's
hook (``Node.host`` / ``Node.command_prefix``); the lab's peer proxies (etcd's, and
ZooKeeper's per-pair ones) are dropped, so peers talk directly and the kernel rules cut
them. PostgreSQL (one primary) starts on 127.0.0.1 as usual. The cluster is registered so
:func:`net_of` finds the namespaces of a cluster.
"""

from __future__ import annotations

import json
import urllib.request
import weakref
from types import TracebackType
from typing import Any

from tenure.conformance.faults.netns import Sandbox
from tenure.conformance.faults.rules import Faults
from tenure.conformance.lab import BACKENDS
from tenure.conformance.lab.cluster import Cluster, LabError

NAMESPACED = ("etcd", "consul", "redis", "zookeeper")
_registry: weakref.WeakKeyDictionary[Cluster, NetLab] = weakref.WeakKeyDictionary()


def _http(url: str, body: dict[str, Any] | None = None, timeout: float = 1.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


class NetLab:
    """A lab cluster in a :class:`Sandbox` (one namespace per node), with its
    :class:`Faults`. Closing it stops the cluster, then removes the namespaces."""

    def __init__(self, backend: str, nodes: int = 1, timeout: float = 90.0,
                 **options: Any) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown lab backend {backend!r}; choose one of "
                             f"{', '.join(BACKENDS)}")
        self.backend = backend
        self.namespaced = backend in NAMESPACED
        self.sandbox = Sandbox()
        self.faults = Faults(self.sandbox)
        try:
            self.cluster: Cluster = BACKENDS[backend](nodes, **options)
            if self.namespaced:
                for node in self.cluster.nodes:
                    ns = self.sandbox.add(node.name)
                    node.host = ns.address
                    node.command_prefix = ns.prefix
                    proxy = getattr(node, "peer_proxy", None)
                    if proxy is not None:  # etcd: peers talk directly across the bridge
                        proxy.close()
                        self.cluster.proxies.remove(proxy)
                        node.peer_proxy = None  # type: ignore[attr-defined]
                pairs = getattr(self.cluster, "pair_proxies", None)
                if pairs:  # ZooKeeper: the same, for its per-pair peer proxies
                    for pair in pairs.values():
                        for proxy in pair:
                            proxy.close()
                            self.cluster.proxies.remove(proxy)
                    pairs.clear()
            self.cluster.start(timeout)
        except BaseException:
            self.sandbox.close()
            raise
        _registry[self.cluster] = self

    @property
    def labels(self) -> list[str]:
        """Namespace labels of the nodes, in node order (the node names)."""
        return [n.name for n in self.cluster.nodes]

    def add_client(self, label: str) -> str:
        """A namespace for a candidate process (``ip netns exec`` prefix via
        ``self.sandbox.namespaces[label].prefix``); returns its address."""
        return self.sandbox.add(label).address

    def store_leader(self) -> int | None:
        """Index of the node the store names its leader (see :func:`store_leader`)."""
        return store_leader(self.cluster)

    def sees_peer(self, observer: int, peer: int) -> bool | None:
        """Whether node ``observer`` reports node ``peer`` reachable, in the store's own
        words: Consul's member list (serf status alive), etcd's health of the peer as
        seen through its leader (a member cut from its peers has no leader: its own
        /health says false). None where the store has no such notion (Redis)."""
        nodes = self.cluster.nodes
        if self.backend == "consul":
            members = _http(f"http://{nodes[observer].client_address}/v1/agent/members")
            status = {m["Name"]: m["Status"] for m in members}
            return bool(status.get(nodes[peer].name) == 1)
        if self.backend == "etcd":
            try:
                health = _http(f"http://{nodes[peer].client_address}/health", timeout=3)
            except OSError:
                return False
            return bool(health and health.get("health") == "true")
        if self.backend == "zookeeper":
            try:
                return nodes[peer].mode() in ("leader", "follower")  # type: ignore[attr-defined]
            except (OSError, LabError):
                return False
        return None

    def close(self) -> None:
        """Stops the cluster, then removes namespaces and rules. Idempotent."""
        try:
            self.cluster.close()
        finally:
            self.sandbox.close()

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def store_leader(cluster: Cluster) -> int | None:
    """Index of the node the store names its leader (None: none now, or a store
    without one -- Redis instances are independent). Works for clusters in or out of
    namespaces."""
    nodes = cluster.nodes
    backend = cluster.backend
    if backend == "etcd":
        for i, node in enumerate(nodes):
            if not node.running:
                continue
            try:
                st = _http(f"http://{node.client_address}/v3/maintenance/status", {})
            except OSError:
                continue
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return i
        return None
    if backend == "consul":
        for node in nodes:
            if not node.running:
                continue
            try:
                addr = _http(f"http://{node.client_address}/v1/status/leader")
            except OSError:
                continue
            for i, candidate in enumerate(nodes):
                port = getattr(candidate, "server_port", None)
                if addr == f"{candidate.host}:{port}":
                    return i
        return None
    if backend == "zookeeper":
        for i, node in enumerate(nodes):
            try:
                if node.running and node.mode() in ("leader", "standalone"):  # type: ignore[attr-defined]
                    return i
            except (OSError, LabError):
                continue
        return None
    return None


def net_of(cluster: Cluster | None) -> NetLab | None:
    """The :class:`NetLab` a cluster was started by, if any."""
    return None if cluster is None else _registry.get(cluster)
