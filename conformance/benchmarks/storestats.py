"""Request counters read from the store itself, so tenure and peers are counted alike.

* Redis: ``INFO commandstats``, the sum of ``calls`` (our own INFO calls excluded);
* etcd: ``/metrics``, the sum of ``grpc_server_msg_received_total`` (every unary request
  and every message on a stream: lease keepalives, watch creates);
* ZooKeeper: ``mntr``'s ``zk_packets_received`` (requests and session pings);
* Consul and SQLite: no store-side counter is read (Consul's agent metrics are
  interval aggregates, SQLite has no server): :func:`reader` returns None and the
  benchmark reports the client's own counts instead, saying so.

A reader returns a monotonically growing count; differences over a window are what the
benchmark uses. Other clients of the same store would be counted too: the lab's stores
serve only the benchmark.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Callable

Reader = Callable[[], float]


def reader(backend: str, hosts: str) -> Reader | None:
    """A counter reader for the store at ``hosts`` (first host), or None."""
    if not hosts:
        return None
    host, _, port = hosts.split(",")[0].rpartition(":")
    if backend == "redis":
        return lambda: _redis_calls(host, int(port))
    if backend == "etcd":
        return lambda: _etcd_messages(host, int(port))
    if backend == "zookeeper":
        return lambda: _zookeeper_packets(host, int(port))
    return None


def describe(backend: str) -> str:
    """What the counter of ``backend`` counts."""
    return {
        "redis": "Redis commands (INFO commandstats)",
        "etcd": "etcd gRPC messages received (/metrics)",
        "zookeeper": "ZooKeeper packets received (mntr)",
    }.get(backend, "client-side counts (no store-side counter read)")


def _redis_calls(host: str, port: int) -> float:
    text = _redis_command(host, port, b"INFO commandstats")
    total = 0
    for match in re.finditer(r"cmdstat_(\w+):calls=(\d+)", text):
        if match.group(1) != "info":
            total += int(match.group(2))
    return float(total)


def _redis_command(host: str, port: int, command: bytes) -> str:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(command + b"\r\n")
        data = b""
        header_end = -1
        while header_end < 0:
            data += sock.recv(65536)
            header_end = data.find(b"\r\n")
        length = int(data[1:header_end])
        body_start = header_end + 2
        while len(data) < body_start + length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data[body_start:body_start + length].decode(errors="replace")


def _etcd_messages(host: str, port: int) -> float:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return float(sum(float(m.group(1)) for m in re.finditer(
        r"^grpc_server_msg_received_total\{[^}]*\} (\S+)$", text, re.MULTILINE)))


def _zookeeper_packets(host: str, port: int) -> float:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"mntr")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    match = re.search(rb"zk_packets_received\s+(\d+)", data)
    if match is None:
        raise RuntimeError(f"ZooKeeper mntr gave no zk_packets_received: {data[:200]!r}")
    return float(match.group(1))
