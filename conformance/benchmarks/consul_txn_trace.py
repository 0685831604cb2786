"""What each operation of tenure's Consul lock and release transactions costs, traced.

A handover on Consul is one write on each side, for tenure and for the guide loop alike:
the leader's release, then the woken successor's lock. The guide sends ``PUT
?release`` and ``PUT ?acquire``; tenure sends ``/v1/txn`` transactions that carry the
contract's checks (``adapters/consul.py``):

* lock: ``check-not-exists`` on the queue entry the successor saw ahead (arrival
  order: nobody who queued earlier is still there), ``check-session`` on its own entry
  (the ticket is still this session's), ``lock`` of the leader key, and the handoff
  marker's ``get-or-empty`` (read with the win);
* release: ``check-session`` on its own entry and on the leader key (a stale ticket of
  this client never frees a newer leadership), ``delete`` of both.

This measures, on one Consul agent (a lab one it starts, or ``--url``), the round trip
of each shape on one kept HTTP/1.1 connection, from the guide's single ``PUT`` to
tenure's whole transaction, one operation added at a time, ``n`` of each, interleaved in
a shuffled order; each sample starts from the same state (set up by requests that are
not timed). So the difference between two rows is what Consul charges for the
operations one has and the other lacks.

What this is not: a whole handover (``handover_trace``), nor Consul's own time (the
round trip includes the loopback and this process's HTTP code, equal for every row).

    python -m tenure.conformance.benchmarks.consul_txn_trace [-n 300] [--nodes 3 | --url http://h:p]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PREFIX = "tenure-trace/txn"
LEADER = f"{PREFIX}/~leader"
MARKER = f"{PREFIX}/marker"


@dataclass(frozen=True)
class Shape:
    """One way of taking (or freeing) the leader key: a name and its request."""

    name: str
    side: str  # "lock" or "release"
    request: Callable[[Keys], tuple[str, str, bytes | None]]


@dataclass(frozen=True)
class Keys:
    """One sample's session, own queue entry and (already gone) entry ahead."""

    session: str
    own: str
    ahead: str


@dataclass
class Row:
    """One shape's median round trip (microseconds)."""

    name: str
    side: str
    median: float
    samples: int


class Agent:
    """One kept HTTP/1.1 connection to a Consul agent (``http.client``: the same client
    code for every shape, so it cancels out of the differences)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise SystemExit(f"--url {url!r}: give http://host:port of a Consul agent")
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def send(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One request; the decoded answer. Raises on any status but 200."""
        self.connection.request(method, path, body=body)
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"Consul answered {method} {path}: {answer.status} "
                               f"{data[:200]!r}")
        return json.loads(data) if data else None

    def timed(self, method: str, path: str, body: bytes | None) -> int:
        """One request's round trip in ns; raises unless it succeeded (a txn that did
        not commit, or a ``?acquire`` answered false, is not a sample)."""
        sent = time.perf_counter_ns()
        answer = self.send(method, path, body)
        took = time.perf_counter_ns() - sent
        if answer is False:
            raise RuntimeError(f"{method} {path} was refused: the sample's state is wrong")
        return took


def _txn(*ops: dict[str, Any]) -> tuple[str, str, bytes | None]:
    return "PUT", "/v1/txn", json.dumps([{"KV": op} for op in ops]).encode()


def _lock(keys: Keys) -> dict[str, Any]:
    return {"Verb": "lock", "Key": LEADER, "Session": keys.session, "Value": ""}


def _checks(keys: Keys) -> list[dict[str, Any]]:
    return [{"Verb": "check-not-exists", "Key": keys.ahead},
            {"Verb": "check-session", "Key": keys.own, "Session": keys.session}]


SHAPES = (
    Shape("PUT ?acquire (guide loop)", "lock",
          lambda k: ("PUT", f"/v1/kv/{LEADER}?acquire={k.session}", b"")),
    Shape("txn: lock", "lock", lambda k: _txn(_lock(k))),
    Shape("txn: check-session own entry, lock", "lock",
          lambda k: _txn(_checks(k)[1], _lock(k))),
    Shape("txn: check-not-exists ahead, check-session own entry, lock", "lock",
          lambda k: _txn(*_checks(k), _lock(k))),
    Shape("txn: the same + get-or-empty marker (tenure)", "lock",
          lambda k: _txn(*_checks(k), _lock(k), {"Verb": "get-or-empty", "Key": MARKER})),
    Shape("PUT ?release (guide loop)", "release",
          lambda k: ("PUT", f"/v1/kv/{LEADER}?release={k.session}", b"")),
    Shape("txn: delete leader key", "release",
          lambda k: _txn({"Verb": "delete", "Key": LEADER})),
    Shape("txn: delete leader key, delete own entry", "release",
          lambda k: _txn({"Verb": "delete", "Key": LEADER}, {"Verb": "delete", "Key": k.own})),
    Shape("txn: check-session x2, delete both (tenure)", "release",
          lambda k: _txn(
              {"Verb": "check-session", "Key": k.own, "Session": k.session},
              {"Verb": "check-session", "Key": LEADER, "Session": k.session},
              {"Verb": "delete", "Key": LEADER}, {"Verb": "delete", "Key": k.own})),
)


def _prepare(agent: Agent, session: str, shape: Shape) -> Keys:
    """The state every sample of either side starts from: an own queue entry held by
    the session, the entry ahead gone, and the leader key free (lock) or held
    (release)."""
    keys = Keys(session, f"{PREFIX}/~queue/{uuid.uuid4()}", f"{PREFIX}/~queue/{uuid.uuid4()}")
    agent.send("DELETE", f"/v1/kv/{LEADER}")
    agent.send("PUT", f"/v1/kv/{keys.own}?acquire={session}", b"")
    if shape.side == "release":
        agent.send("PUT", f"/v1/kv/{LEADER}?acquire={session}", b"")
    return keys


def _tidy(agent: Agent, keys: Keys) -> None:
    agent.send("DELETE", f"/v1/kv/{keys.own}")


def trace(agent: Agent, session: str, n: int = 300, warmup: int = 30) -> list[Row]:
    """``n`` samples of every shape after ``warmup`` each, interleaved, shuffled; rows
    in :data:`SHAPES` order."""
    order = [shape for shape in SHAPES for _ in range(n + warmup)]
    random.Random(1).shuffle(order)
    found: dict[str, list[int]] = {shape.name: [] for shape in SHAPES}
    seen = dict.fromkeys(found, 0)
    for shape in order:
        keys = _prepare(agent, session, shape)
        took = agent.timed(*shape.request(keys))
        _tidy(agent, keys)
        seen[shape.name] += 1
        if seen[shape.name] > warmup:
            found[shape.name].append(took)
    return [Row(shape.name, shape.side, statistics.median(found[shape.name]) / 1000,
                len(found[shape.name])) for shape in SHAPES]


def table(rows: list[Row]) -> str:
    """A markdown table: each shape's median, and its difference to the guide's PUT."""
    lines = ["| side | request | round trip median us | vs the guide's PUT us |",
             "|---|---|---:|---:|"]
    for side in ("lock", "release"):
        mine = [r for r in rows if r.side == side]
        for row in mine:
            lines.append(f"| {side} | {row.name} | {row.median:.0f} | "
                         f"{row.median - mine[0].median:+.0f} |")
    return "\n".join(lines)


@contextmanager
def agent_with_session(url: str | None, nodes: int = 1) -> Iterator[tuple[str, Agent, str]]:
    """An :class:`Agent` on ``url`` (None: the first agent of a ``nodes``-node lab
    Consul, started and stopped here) and a session on it (TTL 60 s, no checks, as
    tenure's), destroyed after."""
    cluster = None
    if url is None:
        from tenure.conformance.lab import start_cluster

        cluster = start_cluster("consul", nodes=nodes)
        url = f"http://{cluster.nodes[0].client_address}"
    try:
        agent = Agent(url)
        body = json.dumps({"TTL": "60s", "Behavior": "delete", "LockDelay": "0ms",
                           "NodeChecks": [], "ServiceChecks": []}).encode()
        session = str(agent.send("PUT", "/v1/session/create", body)["ID"])
        try:
            yield url, agent, session
        finally:
            agent.send("PUT", f"/v1/session/destroy/{session}")
            agent.send("DELETE", f"/v1/kv/{PREFIX}?recurse")
            agent.connection.close()
    finally:
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="samples per request shape")
    parser.add_argument("--url", help="a Consul agent, http://host:port (default: a lab one)")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 3),
                        help="servers of the lab Consul (without --url)")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error(f"-n {args.n}: give at least 10 samples per shape")
    with agent_with_session(args.url, args.nodes) as (url, agent, session):
        load = os.getloadavg()[0]
        rows = trace(agent, session, n=args.n)
        where = url if args.url else f"{url} (lab, {args.nodes} node(s))"
        print(f"Consul {where}, {args.n} samples per shape, load {load:.2f} -> "
              f"{os.getloadavg()[0]:.2f}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
