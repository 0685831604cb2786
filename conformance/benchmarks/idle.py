"""Idle cost: CPU per minute of 1 leader + N waiting candidates, client side and store side.

For one tool on one store: N + 1 candidate processes (:mod:`.worker`, separate OS
processes) join one election; the first leads, the others wait. After a settling time
(one TTL, at least 1 s: the followers' enqueue round trips and the first renewals are
not idle work) the CPU seconds used over a window are read from ``/proc/<pid>/stat``
(utime + stime, and cutime + cstime of children already reaped) for

* the candidates: every worker process and its living descendants (and, for tenure via
  ``tenure serve``, the gateway process, which holds the sessions);
* the store: the lab cluster's server processes and their descendants (PostgreSQL's
  backends). SQLite is embedded: its work is in the candidates' CPU, store CPU is 0.
  A store given by URL (``--backend``) has no process of ours: store CPU is not read.

The store's own idle CPU with no candidates, over a window of the same length, is
measured once per store before its first idle row (the *baseline*); it is reported,
never subtracted. Figures are CPU seconds per minute of wall time (60 = one core busy).

Every row, tenure's and every peer's on every store, runs at one TTL
(:data:`~tenure.conformance.benchmarks.systems.IDLE_TTL`, 2 s: kazoo's on ZooKeeper, the
reference, and the largest of the stores' minimums): keep-alive work per minute scales
with 1/TTL, so rows at each store's minimum would charge a 1 s store twice.

What this is not: the cost of campaigns or of leader changes (those are outside the
window), or of anything but this host's processes (the kernel's network work on behalf
of a process is in its stime; softirq work is not attributed to any process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from tenure.conformance.benchmarks.workers import Workers

DEFAULT_WINDOW = 30.0
DEFAULT_FOLLOWERS = 10
SETTLE_MIN = 1.0
_TICK = float(os.sysconf("SC_CLK_TCK"))

EMBEDDED = "SQLite is embedded: the store's work is in the candidates' CPU"
NOT_OURS = "a store given by URL: its processes are not ours to read"
REFERENCE = ("zookeeper", "kazoo Election")
"""The (store, system) row every idle ratio is taken against (issue 14)."""


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children), or None if
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = text.rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / _TICK


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes ``roots`` and all their living
    descendants (user + system, each with its reaped children's), read from /proc.

    A difference of two reads is the CPU used in between by that tree, children that
    started or exited in between included (an exited child's time moves into its
    parent's cutime/cstime when reaped). Resolution: one clock tick (usually 10 ms)
    per process. A root that no longer exists counts 0."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, seen, todo = 0.0, set(), [p for p in roots if p in stats]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def store_pids(cluster: Any) -> list[int] | None:
    """The running server processes of a lab cluster (None: no cluster)."""
    if cluster is None:
        return None
    return [node.pid for node in cluster.nodes if node.pid is not None]


def baseline(pids: Sequence[int], window: float) -> float:
    """CPU seconds per minute the store processes ``pids`` use with nobody connected
    by this measurement, over ``window`` seconds."""
    before, t0 = tree_cpu(pids), time.monotonic()
    time.sleep(window)  # the observation window itself
    after, t1 = tree_cpu(pids), time.monotonic()
    return (after - before) / (t1 - t0) * 60


def measure(tool: str, url: str, election: str, ttl: float, followers: int, window: float,
            store: Sequence[int] | None, client_extra: Sequence[int] = ()) -> dict[str, Any]:
    """1 leader + ``followers`` waiting candidates of ``tool``, watched for ``window``
    seconds, every candidate at ``ttl``. Returns ``ttl``, CPU seconds (``client_cpu``,
    ``store_cpu``: None when ``store`` is None), the wall time, the per-minute figures
    and ``changes``: leaderships won or lost during the window (0 when the leader held
    throughout, as it should)."""
    with Workers(tool, url, election, ttl) as workers:
        members = [workers.spawn(ready=False) for _ in range(followers + 1)]
        for member in members:
            member.next("ready", timeout=120)
        leader, rest = members[0], members[1:]
        leader.send("campaign")
        leader.next("elected", timeout=60)
        for member in rest:
            member.send("campaign")
        for member in rest:
            member.next("campaigning", timeout=60)
        # No event says "enqueued and now only waiting" for every tool: give the
        # followers' first round trips (and the first renewals) one TTL to finish.
        time.sleep(max(SETTLE_MIN, ttl))
        if any(m.seen("elected") for m in rest):
            raise RuntimeError("a follower was elected before the window: the leader "
                               "lost its leadership while the followers queued")
        pids = [m.pid for m in members] + list(client_extra)
        store_pids_ = list(store or ())
        c0, s0, t0 = tree_cpu(pids), tree_cpu(store_pids_), time.monotonic()
        time.sleep(window)  # the observation window itself
        c1, s1, t1 = tree_cpu(pids), tree_cpu(store_pids_), time.monotonic()
        changes = sum(1 for m in rest if m.seen("elected")) + \
            sum(1 for m in members if m.seen("lost"))
        alive = sum(1 for m in members if m.process.poll() is None)
    wall = t1 - t0
    result: dict[str, Any] = {
        "ttl": ttl, "window": wall, "candidates": followers + 1, "alive": alive,
        "changes": changes,
        "client_cpu": c1 - c0, "client_per_min": (c1 - c0) / wall * 60,
        "store_cpu": None, "store_per_min": None,
    }
    if store is not None:
        result.update(store_cpu=s1 - s0, store_per_min=(s1 - s0) / wall * 60)
    if alive != followers + 1:
        raise RuntimeError(f"only {alive} of {followers + 1} candidates still ran at the "
                           "end of the window")
    return result


def why_not(backend: str) -> str | None:
    """Why ``backend`` has no idle row (None: it has)."""
    if backend == "bully":
        return "the Bully reference runs two fixed peers, not 1 leader + N followers"
    return None


def line(store: str, system: str, extra: dict[str, Any]) -> str:
    """One progress line."""
    def num(key: str) -> str:
        value = extra.get(key)
        return "-" if value is None else f"{value:.3f}"

    return (f"{store:9} {system:24} idle         client {num('client_per_min')} CPU s/min, "
            f"store {num('store_per_min')} (baseline {num('baseline_per_min')}) "
            f"over {extra.get('window', 0):.0f} s, {extra.get('candidates')} candidates")
