"""Consul 1.14 in the lab: 1 server, or 3 servers, all on 127.0.0.1 with their own ports.

Every server runs with ``session_ttl_min = "500ms"`` and ``raft_multiplier = 1``: the
server invalidates a session only after 2 x its TTL, so tenure sends half its TTL and
tenure's TTL 1 s (sent as 500ms) is the smallest the lab serves.
Each node has a fixed node id, so ``restart(wipe=True)`` rejoins as the same server.
Readiness: ``/v1/status/leader`` names a leader on every running server, each server's
node is in the catalog (sessions need it) and a KV write followed by a read succeeds.

Peer isolation is not offered: Consul's gossip runs over UDP as well as TCP, and a
server advertises its own ports, so a TCP proxy cannot sit between servers. Client-side
faults (``cluster.proxy(...)``) and kill/pause/restart work as for every store.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from typing import Any

from tenure.conformance.lab.cluster import Cluster, Node, find_binary, free_port


def _http(url: str, method: str = "GET", data: bytes | None = None,
          timeout: float = 3.0) -> bytes:
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


class ConsulNode(Node):
    cluster: ConsulCluster

    def __init__(self, cluster: Cluster, index: int) -> None:
        super().__init__(cluster, index)
        self.server_port = free_port()
        self.serf_lan_port = free_port()
        self.serf_wan_port = free_port()
        self.node_id = str(uuid.uuid4())

    @property
    def http(self) -> str:
        return f"http://{self.client_address}"

    def prepare(self) -> None:
        config = {
            "node_name": self.name,
            "node_id": self.node_id,
            "datacenter": "lab",
            "data_dir": str(self.data_dir),
            "server": True,
            "bootstrap_expect": len(self.cluster.nodes),
            "bind_addr": self.host,
            "client_addr": self.host,
            "advertise_addr": self.host,
            "retry_join": [f"{n.host}:{n.serf_lan_port}" for n in self.cluster.nodes
                           if n is not self],
            "retry_interval": "1s",
            "ports": {
                "http": self.client_port,
                "server": self.server_port,
                "serf_lan": self.serf_lan_port,
                "serf_wan": self.serf_wan_port,
                "dns": -1,
                "grpc": -1,
                "grpc_tls": -1,
            },
            "session_ttl_min": "500ms",
            "performance": {"raft_multiplier": 1},
            "disable_update_check": True,
            "disable_host_node_id": True,
            "leave_on_terminate": False,
            "log_level": "INFO",
            "ui_config": {"enabled": False},
            "autopilot": {"cleanup_dead_servers": False},
        }
        if len(self.cluster.nodes) == 1:
            config.pop("retry_join")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "consul.json").write_text(json.dumps(config, indent=2))

    def argv(self) -> list[str]:
        return [find_binary("consul", "TENURE_CONSUL_BIN"), "agent",
                f"-config-file={self.dir / 'consul.json'}"]

    def serves(self) -> bool:
        # Sessions name their agent's node: creating one fails ("Missing node
        # registration") until the node is in the catalog, a moment after the leader.
        leader = json.loads(_http(f"{self.http}/v1/status/leader"))
        return bool(leader) and json.loads(
            _http(f"{self.http}/v1/catalog/node/{self.name}")) is not None


class ConsulCluster(Cluster):
    backend = "consul"
    scheme = "consul"
    node_class = ConsulNode
    nodes: list[ConsulNode]  # type: ignore[assignment]

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        super().__init__(nodes, **options)

    def serves(self) -> bool:
        running = [n for n in self.nodes if n.running]
        if not running or not all(n.serves() for n in running):
            return False
        api = running[0].http
        ok = json.loads(_http(f"{api}/v1/kv/tenure-lab-ready", "PUT", b"1"))
        if ok is not True:
            return False
        got = json.loads(_http(f"{api}/v1/kv/tenure-lab-ready"))
        return base64.b64decode(got[0]["Value"]) == b"1"
