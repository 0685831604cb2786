"""Where a resign handover's time goes, per phase, for tenure and the best peer side by side.

``tenure bench --only handover`` gives one figure per tool: the leader's ``resign()``
returning -> the successor's ``campaign()`` returning. This splits that figure with the
socket calls of both bench worker processes (:mod:`.wiretap`), taken on the same
``CLOCK_MONOTONIC``:

* ``release``: the leader's release request sent -> its answer received;
* ``answer -> resigned``: the leader's Python after that answer, until ``resign()`` returns;
* ``release -> wake``: the release sent -> the successor's wake received (the store's
  commit and notification: a Consul blocking query's answer, a ZooKeeper watch event,
  a Redis pub/sub message or ``BLPOP`` answer, an etcd watch response);

and the four parts of the bench's figure, which add up to it in every handover:

* ``resigned -> wake``: ``resign()`` returning -> the successor's wake received
  (negative when the wake came first);
* ``wake -> ask``: the successor's Python from its wake to its one request on the wire;
* ``ask``: that request's round trip (the store's work for it);
* ``answer -> elected``: the successor's Python from that answer to ``campaign()``
  returning;
* ``handover``: the bench's figure, ``elected - resigned``.

Medians and means over the handovers of each tool: each phase's own median (medians
need not add up), and means, which do (the four parts' means are the handover's).
Tools take turns in blocks (``--blocks``), as in ``tenure bench``, so a minute of a busy
machine falls on both.

What is noise and left out: Consul session renewals (every request on a connection that
carried a ``/v1/session/renew``), ZooKeeper pings (xid -2) and kazoo's one-byte wake-ups
of its own connection thread, and for etcd and Redis the
lease or session renewals are told apart by their connection only loosely (see
:func:`phases`). What it is not: a packet capture (a receive is stamped when Python has
the bytes), nor the store's own time (``ask`` includes both kernels' loopback).

    python -m tenure.conformance.benchmarks.handover_trace --store consul [-n 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tenure.conformance.benchmarks.systems import systems_for
from tenure.conformance.benchmarks.workers import Worker, Workers

BEST_PEER = {"etcd": "etcd-lock", "zookeeper": "kazoo", "consul": "consul-guide",
             "redis": "python-redis-lock"}
PHASES = ("release", "answer -> resigned", "release -> wake", "resigned -> wake",
          "wake -> ask", "ask", "answer -> elected", "handover")
WARMUP = 10
EXPERIMENTS = {"tenure-unwatched": ("tenure", "zookeeper")}
"""Tools only this trace runs (never ``tenure bench``): tool -> (the system whose URL and
TTL it takes, the one store it runs on); see :mod:`.peers.tenure_unwatched`."""


class TraceError(RuntimeError):
    """A handover's socket calls do not show the steps this trace looks for."""


@dataclass(frozen=True)
class Message:
    """One request or answer on one socket (ZooKeeper's length prefix merged in)."""

    op: str
    start: float
    end: float
    fd: int
    head: bytes


def messages(taps: Iterable[dict[str, Any]], store: str) -> list[Message]:
    """The worker's socket calls as messages, noise (renewals, pings) removed."""
    found: list[Message] = []
    pending: dict[int, dict[str, Any]] = {}
    renewal_fds: set[int] = set()
    for tap in taps:
        head = tap["head"].encode("latin-1")
        if store == "zookeeper" and tap["op"] == "recv":
            if tap["fd"] not in pending and tap["size"] == 4:  # kazoo reads the length first
                pending[tap["fd"]] = tap
                continue
            first = pending.pop(tap["fd"], tap)
            found.append(Message("recv", first["start"], first["end"], tap["fd"], head))
            continue
        if store == "consul" and tap["op"] == "send" and b"/v1/session/renew" in head:
            renewal_fds.add(tap["fd"])
        found.append(Message(tap["op"], tap["start"], tap["end"], tap["fd"], head))
    return [m for m in found if not _noise(m, store, renewal_fds)]


def _noise(message: Message, store: str, renewal_fds: set[int]) -> bool:
    if store == "consul":
        return message.fd in renewal_fds
    if store == "zookeeper":
        if len(message.head) == 1:
            return True  # kazoo's wake-up byte to its connection thread (a socket pair)
        xid = message.head[4:8] if message.op == "send" else message.head[:4]
        return xid == b"\xff\xff\xff\xfe"  # ping
    return False


def _first(found: list[Message], op: str, after: float, fd: int | None = None) -> Message:
    for message in found:
        stamp = message.start if op == "send" else message.end
        if message.op == op and stamp >= after and (fd is None or message.fd == fd):
            return message
    raise TraceError(f"no {op} after {after:.6f}" + (f" on fd {fd}" if fd is not None else ""))


def phases(leader: list[Message], waiter: list[Message], asked: float, resigned: float,
           elected: float) -> dict[str, float]:
    """One handover's phases in seconds. ``asked``: when the bench told the leader to
    resign. The leader's release is its first request after that; the successor's wake
    is the first message it received after that release went out (its own earlier
    queries are answered before the resign), its request the first it sent after the
    wake, the answer the first on that socket after it."""
    release = _first(leader, "send", asked)
    released = _first(leader, "recv", release.start, release.fd)
    wake = _first(waiter, "recv", release.start)
    ask = _first(waiter, "send", wake.end)
    answer = _first(waiter, "recv", ask.start, ask.fd)
    if not wake.end <= ask.start <= answer.end <= elected:
        raise TraceError("the successor's wake, request and answer are out of order")
    return {"release": released.end - release.start,
            "answer -> resigned": resigned - released.end,
            "release -> wake": wake.end - release.start,
            "resigned -> wake": wake.end - resigned,
            "wake -> ask": ask.start - wake.end,
            "ask": answer.end - ask.start,
            "answer -> elected": elected - answer.end,
            "handover": elected - resigned}


@dataclass
class Pair:
    """Two workers of one tool taking turns to lead."""

    tool: str
    store: str
    workers: Workers
    leader: Worker
    waiter: Worker
    samples: list[dict[str, float]] = field(default_factory=list)
    unparsed: int = 0
    """Handovers whose socket calls did not show the steps (left out)."""

    def handover(self, hold: float) -> dict[str, float] | None:
        """One handover's phases; None (counted in ``unparsed``) if its socket calls
        did not show them."""
        time.sleep(hold)  # the leader's term, not a synchronisation
        asked = time.monotonic()
        self.leader.send("resign")
        resigned = self.leader.next("resigned")
        elected = self.waiter.next("elected")
        self.leader.send("campaign")
        self.leader.next("campaigning")
        self.leader, self.waiter = self.waiter, self.leader
        try:
            return phases(messages(resigned["taps"], self.store),
                          messages(elected["taps"], self.store), asked, resigned["t"],
                          elected["t"])
        except TraceError:
            # e.g. the successor had not parked on a watch yet: its wake was the
            # answer of its first read. Left out and counted, never taken apart wrongly.
            self.unparsed += 1
            if self.unparsed > max(10, len(self.samples)):
                raise
            return None


def open_pair(store: str, tool: str, url: str, election: str, ttl: float) -> Pair:
    """Two traced workers of ``tool``; the first leads, the second waits."""
    workers = Workers(tool, url, election, ttl, wire_trace=True)
    try:
        first, second = workers.spawn(), workers.spawn()
        first.send("campaign")
        first.next("elected")
        second.send("campaign")
        second.next("campaigning")
    except BaseException:
        workers.close()
        raise
    return Pair(tool, store, workers, first, second)


def trace(store: str, url: str, tools: list[str], count: int, blocks: int = 5,
          hold: float = 0.05, warmup: int = WARMUP) -> dict[str, list[dict[str, float]]]:
    """Per tool, ``count`` handovers' phases in seconds, the tools taking turns in
    ``blocks`` blocks after ``warmup`` unreported handovers each."""
    systems = {s.tool: s for s in systems_for(store, url)}
    systems.update({tool: systems[base] for tool, (base, on) in EXPERIMENTS.items()
                    if on == store})
    unknown = [t for t in tools if t not in systems]
    if unknown:
        raise TraceError(f"tools {unknown} do not run on {store}; choose from "
                         f"{sorted(systems)}")
    pairs = [open_pair(store, tool, systems[tool].url, f"trace-{tool}-{time.monotonic_ns()}",
                       systems[tool].ttl) for tool in tools]
    try:
        for pair in pairs:
            for _ in range(warmup):
                pair.handover(hold)
        per_block = -(-count // blocks)
        for block in range(blocks):
            order = pairs if block % 2 == 0 else pairs[::-1]
            for pair in order:
                goal = min(len(pair.samples) + per_block, count)
                while len(pair.samples) < goal:
                    found = pair.handover(hold)
                    if found is not None:
                        pair.samples.append(found)
    finally:
        for pair in pairs:
            pair.workers.close()
    for pair in pairs:
        if pair.unparsed:
            print(f"{pair.tool}: {pair.unparsed} handovers left out (their socket calls did "
                  "not show the steps)", file=sys.stderr)
    return {pair.tool: pair.samples for pair in pairs}


def table(samples: dict[str, list[dict[str, float]]]) -> str:
    """A markdown table, phases as rows; per statistic (median, mean) one column per tool
    and, with two tools, the first's minus the second's (microseconds)."""
    tools = list(samples)
    stats: dict[str, Callable[[list[float]], float]] = {
        "median": statistics.median, "mean": statistics.fmean}
    header, rule = ["phase (us)"], ["---"]
    for name in stats:
        header += [f"{t} {name}" for t in tools] + (["difference"] if len(tools) > 1 else [])
    rule += ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for phase in PHASES:
        cells = [phase]
        for statistic in stats.values():
            figures = [statistic([s[phase] for s in samples[t]]) * 1e6 for t in tools]
            cells += [f"{f:.0f}" for f in figures]
            if len(tools) > 1:
                cells.append(f"{figures[0] - figures[1]:+.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, choices=sorted(BEST_PEER))
    parser.add_argument("-n", type=int, default=60, help="handovers per tool")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--tools", help="comma-separated (default: tenure and the best peer)")
    parser.add_argument("--url", help="the store (default: a 1-node lab one)")
    args = parser.parse_args(argv)
    if args.n < args.blocks:
        parser.error(f"-n {args.n}: give at least one handover per block ({args.blocks})")
    tools = args.tools.split(",") if args.tools else ["tenure", BEST_PEER[args.store]]
    from tenure.conformance.lab import start_cluster

    cluster = None if args.url else start_cluster(args.store, nodes=1)
    url = args.url or cluster.url  # type: ignore[union-attr]
    try:
        load = os.getloadavg()[0]
        samples = trace(args.store, url, tools, args.n, args.blocks)
        print(f"{args.store} {url.split('@')[-1]}, {args.n} handovers per tool in "
              f"{args.blocks} blocks, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
        print(table(samples))
    except TraceError as exc:
        parser.exit(1, f"handover trace: {exc}\n")
    finally:
        if cluster is not None:
            cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
