"""etcd 3.4 in the lab: 1 member, or 3 members with peer traffic through proxies.

Readiness: every member answers ``/health`` with ``"health": "true"`` (it has a leader)
and a put followed by a range read through the v3 JSON gateway returns the value.

Peer isolation: each member advertises a peer URL that is a :class:`Proxy` in front of
its real peer port. Every etcd peer request carries the sender's ``X-PeerURLs`` header,
so the proxies tag connections by sender; :meth:`EtcdCluster.isolate` cuts the isolated
member's own proxy and blocks its connections at the others (both directions break).

``restart(wipe=True)`` removes the member from the cluster, adds it back as a new
member and starts it empty with ``--initial-cluster-state existing`` (etcd refuses a
wiped member under its old identity).
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from tenure.conformance.lab.cluster import (
    HOST,
    Cluster,
    LabError,
    Node,
    eventually,
    find_binary,
    free_port,
)
from tenure.conformance.lab.proxy import Proxy


def _peer_tag(head: bytes) -> str | None:
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return None
    for line in head[:end].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"x-peerurls":
            return value.strip().decode(errors="replace").split(",")[0]
    return ""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 2.0) -> Any:
    """GET (or POST ``body`` as JSON) and decode the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


class EtcdNode(Node):
    cluster: EtcdCluster

    def __init__(self, cluster: Cluster, index: int) -> None:
        super().__init__(cluster, index)
        self.peer_port = free_port()
        self.peer_proxy: Proxy | None = None
        self.initial_state = "new"

    @property
    def peer_url(self) -> str:
        """The advertised peer URL (the proxy when there are peers)."""
        if self.peer_proxy is not None:
            return f"http://{HOST}:{self.peer_proxy.port}"
        return f"http://{self.host}:{self.peer_port}"

    @property
    def http(self) -> str:
        return f"http://{self.client_address}"

    def argv(self) -> list[str]:
        initial = ",".join(f"{n.name}={n.peer_url}" for n in self.cluster.nodes)
        return [
            find_binary("etcd", "TENURE_ETCD_BIN"),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.http,
            "--advertise-client-urls", self.http,
            "--listen-peer-urls", f"http://{self.host}:{self.peer_port}",
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", self.initial_state,
            "--initial-cluster-token", f"tenure-lab-{id(self.cluster)}",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
        ]

    def serves(self) -> bool:
        health = http_json(f"{self.http}/health")
        return bool(health and health.get("health") == "true")

    def wipe(self) -> None:
        others = [n for n in self.cluster.nodes if n is not self and n.running]
        if not others:
            super().wipe()
            return
        api = others[0].http

        def members() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = http_json(f"{api}/v3/cluster/member/list", {})["members"]
            return found

        def remove() -> None:
            # A reconfiguration soon after a restart can stall; retry until it is done.
            for member in members():
                if member.get("name") == self.name or self.peer_url in member.get("peerURLs", []):
                    http_json(f"{api}/v3/cluster/member/remove", {"ID": member["ID"]}, timeout=3)

        def add() -> None:
            if not any(self.peer_url in m.get("peerURLs", []) for m in members()):
                http_json(f"{api}/v3/cluster/member/add", {"peerURLs": [self.peer_url]}, timeout=3)

        eventually(remove, 60, f"etcd to remove member {self.name}")
        eventually(add, 60, f"etcd to add member {self.name} back")
        super().wipe()
        self.initial_state = "existing"


class EtcdCluster(Cluster):
    backend = "etcd"
    scheme = "etcd"
    node_class = EtcdNode
    nodes: list[EtcdNode]  # type: ignore[assignment]

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        super().__init__(nodes, **options)
        if len(self.nodes) > 1:
            for node in self.nodes:
                node.peer_proxy = Proxy((HOST, node.peer_port), tagger=_peer_tag,
                                        name=f"peer->{node.name}")
                self.proxies.append(node.peer_proxy)

    def serves(self) -> bool:
        running = [n for n in self.nodes if n.running]
        if not running or not all(n.serves() for n in running):
            return False
        api = running[0].http
        http_json(f"{api}/v3/kv/put", {"key": _b64("tenure-lab-ready"), "value": _b64("1")})
        got = http_json(f"{api}/v3/kv/range", {"key": _b64("tenure-lab-ready")})
        return bool(got.get("kvs")) and got["kvs"][0]["value"] == _b64("1")

    def isolate(self, node: int) -> None:
        target = self._peer_node(node)
        assert target.peer_proxy is not None
        target.peer_proxy.cut()
        for other in self.nodes:
            if other is not target and other.peer_proxy is not None:
                other.peer_proxy.block(target.peer_url)
        self.isolated.add(node)

    def rejoin(self, node: int) -> None:
        target = self._peer_node(node)
        assert target.peer_proxy is not None
        target.peer_proxy.heal()
        for other in self.nodes:
            if other is not target and other.peer_proxy is not None:
                other.peer_proxy.unblock(target.peer_url)
        self.isolated.discard(node)

    def _peer_node(self, node: int) -> EtcdNode:
        if len(self.nodes) < 3:
            raise LabError("isolate/rejoin needs a 3-node etcd cluster")
        return self.nodes[node]
