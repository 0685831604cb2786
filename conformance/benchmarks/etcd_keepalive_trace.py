"""What one etcd lease keepalive costs in CPU, on the client and in etcd.

The idle row of etcd is almost all lease keepalives: tenure's leader renews every
lifetime/3 and each waiter every 0.45 x lifetime, because every waiter's queue key is
bound to its lease (arrival order). This sends ``n`` keepalives of one lease, ``gap``
seconds apart, three ways in turn, ``rounds`` times:

* ``idle``: no request, only the gaps (what the client process and etcd cost anyway);
* ``grpc``: tenure's own renewal, ``EtcdStore.renew_session`` (one keepalive on the
  adapter's kept gRPC stream);
* ``http``: etcd's HTTP/JSON gateway, ``POST /v3/lease/keepalive`` on one kept HTTP/1.1
  connection (``http.client``).

and reports CPU per keepalive: this process's (``getrusage``: every thread, gRPC's C
core included) and the etcd server's (:func:`.idle.tree_cpu`, from ``/proc``), on a lab
etcd it starts (1 node). What it is not: a whole idle row (``tenure bench --only
idle``), which also has watches and several processes.

    python -m tenure.conformance.benchmarks.etcd_keepalive_trace [-n 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenure.adapters.etcd import EtcdStore
from tenure.config import parse_backend_url
from tenure.conformance.benchmarks.idle import tree_cpu

WAYS = ("idle", "grpc", "http")
WARMUP = 20


@dataclass
class Sample:
    """One way's round: CPU milliseconds per keepalive (or per gap, for ``idle``)."""

    way: str
    client_ms: float
    server_ms: float


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Gateway:
    """etcd's HTTP/JSON gateway on one kept connection."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=5)

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        """One POST; the decoded answer (raises unless 200)."""
        self.connection.request("POST", path, body=json.dumps(body))
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"etcd answered {path}: {answer.status} {data[:200]!r}")
        decoded: dict[str, object] = json.loads(data)
        return decoded


def _timed(pid: int, n: int, gap: float, one: Callable[[], None] | None) -> tuple[float, float]:
    client, server = _own_cpu(), tree_cpu([pid])
    for _ in range(n):
        if one is not None:
            one()
        time.sleep(gap)
    return (_own_cpu() - client) * 1000 / n, (tree_cpu([pid]) - server) * 1000 / n


def _grpc_round(url: str, pid: int, n: int, gap: float) -> Sample:
    store = EtcdStore.from_url(parse_backend_url(url)[0])
    try:
        store.open_session(60)
        for _ in range(WARMUP):
            store.renew_session(frozenset())
        return Sample("grpc", *_timed(pid, n, gap, lambda: store.renew_session(frozenset())))
    finally:
        store.close_session()
        store.close()


def _http_round(address: str, pid: int, n: int, gap: float) -> Sample:
    gateway = Gateway(address)
    lease = gateway.post("/v3/lease/grant", {"TTL": 60})["ID"]

    def keepalive() -> None:
        result = gateway.post("/v3/lease/keepalive", {"ID": lease})["result"]
        if not isinstance(result, dict) or int(result.get("TTL", 0)) <= 0:
            raise RuntimeError(f"the gateway's keepalive did not renew: {result!r}")

    try:
        for _ in range(WARMUP):
            keepalive()
        return Sample("http", *_timed(pid, n, gap, keepalive))
    finally:
        gateway.post("/v3/lease/revoke", {"ID": lease})
        gateway.connection.close()


def measure(url: str, address: str, pid: int, n: int = 600, gap: float = 0.02,
            rounds: int = 3) -> list[Sample]:
    """``rounds`` x every way of :data:`WAYS`, in that order, on the etcd at ``url``
    (``address`` its client host:port, ``pid`` its server process)."""
    samples = []
    for _ in range(rounds):
        samples.append(Sample("idle", *_timed(pid, n, gap, None)))
        samples.append(_grpc_round(url, pid, n, gap))
        samples.append(_http_round(address, pid, n, gap))
    return samples


def table(samples: list[Sample]) -> str:
    """A markdown table: per way, each round's client and server CPU per keepalive."""
    lines = ["| way | client CPU ms per keepalive (rounds) | etcd CPU ms per keepalive "
             "(rounds) |", "|---|---|---|"]
    for way in WAYS:
        mine = [s for s in samples if s.way == way]
        lines.append(f"| {way} | {' / '.join(f'{s.client_ms:.3f}' for s in mine)} | "
                     f"{' / '.join(f'{s.server_ms:.3f}' for s in mine)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=600, help="keepalives per way and round")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between them")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.n < 10 or args.rounds < 1 or not 0 < args.gap <= 1:
        parser.error("give -n >= 10, --rounds >= 1 and 0 < --gap <= 1")
    from tenure.conformance.lab import start_cluster

    cluster = start_cluster("etcd", nodes=1)
    try:
        node = cluster.nodes[0]
        if node.pid is None:
            raise SystemExit("the lab etcd has no process to read CPU from")
        load = os.getloadavg()[0]
        samples = measure(cluster.url, node.client_address, node.pid, args.n, args.gap,
                          args.rounds)
        print(f"etcd {cluster.url}, {args.n} keepalives {args.gap * 1000:g} ms apart per "
              f"way and round, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
        print(table(samples))
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
