"""Redis 7 in the lab: 1 instance, or 3 *independent* instances (no replication: the
tenure Redis backend needs a majority of independent instances).

``persistence=True`` runs every instance with AOF (``appendfsync always``) in its data
dir, so a restart without ``wipe`` keeps the data; without it an instance restarts
empty, as a real cache would. Readiness: ``PING`` answers ``+PONG`` on every instance.
There are no peers to isolate: cut a client from some instances with ``cluster.proxy``.
"""

from __future__ import annotations

import socket
from typing import Any

from tenure.conformance.lab.cluster import Cluster, Node, find_binary


def ping(address: tuple[str, int], timeout: float = 2.0) -> bool:
    """True when a Redis server at ``address`` answers PING with PONG."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


class RedisNode(Node):
    def argv(self) -> list[str]:
        argv = [
            find_binary("redis-server", "TENURE_REDIS_BIN"),
            "--port", str(self.client_port),
            "--bind", self.host,
            "--daemonize", "no",
            "--save", "",
            "--dir", str(self.data_dir),
            "--protected-mode", "no",
        ]
        if self.cluster.options.get("persistence"):
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        return argv

    def serves(self) -> bool:
        return ping((self.host, self.client_port))


class RedisCluster(Cluster):
    """``options``: ``persistence`` (bool, default False)."""

    backend = "redis"
    scheme = "redis"
    node_class = RedisNode

    def __init__(self, nodes: int = 1, **options: Any) -> None:
        unknown = set(options) - {"persistence", "base_dir", "client_ports"}
        if unknown:
            raise ValueError(f"unknown redis lab option(s) {sorted(unknown)}; "
                             "the only one is persistence=True")
        super().__init__(nodes, **options)
