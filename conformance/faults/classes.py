"""The fault classes the chaos schedule (and the soak) draw from, beyond the proxy ones.

Each class injects one fault, waits (bounded) for the store to show it happened, and
returns an :class:`Injected` with the evidence and the repair. Classes:

========================  =============================================================
``partition-isolate``     a store node cut from its peers (nftables, both ways; clients
                          still reach it). Redis (no peers): the candidates cut from one
                          instance. Evidence: a peer reports it unreachable.
``partition-split``       minority | majority, candidates on both sides: client
                          namespace A with one node, B with the others.
``partition-bridge``      node 1 + A | node 3 + B, node 2 reaches both sides.
``loss-one-way``          one node's packets to another lost, the way back intact.
``loss-link``             30 % random loss between two nodes and one client side.
``latency-link``          ``tc netem`` delay on a node's link (only where the kernel has
                          netem; else not drawn -- the proxy's ``latency`` covers it).
``store-pause``           SIGSTOP of the store leader (any node of Redis / 1 node) for
                          1.5-2.5 TTL. Evidence: another node becomes store leader.
``leader-kill``           SIGKILL of the store leader, restarted 0.5-2 TTL later (drawn
                          again and again: the kill/restart loop).
``redis-wipe``            one Redis instance killed and restarted without its data after
                          1-1.5 TTL (the documented operator rule), the others keep theirs.
                          Evidence: its data directory is gone.
``member-readd``          an etcd member removed, wiped and added back as a new member.
                          Evidence: its member id changed.
``clock-step``            every candidate's wall clock stepped by +-1 h (libfaketime).
                          Evidence: the candidates' ``wall`` events show the step.
========================  =============================================================
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenure.conformance.faults.lab import NetLab, store_leader
from tenure.conformance.faults.rules import netem_available
from tenure.conformance.lab.cluster import Cluster, LabError, wait_until
from tenure.conformance.suite import history

NET_CLASSES = ("partition-isolate", "partition-split", "partition-bridge", "loss-one-way",
               "loss-link", "latency-link")
NODE_CLASSES = ("store-pause", "leader-kill", "redis-wipe", "member-readd")
CLOCK_CLASSES = ("clock-step",)
CLASSES = NET_CLASSES + NODE_CLASSES + CLOCK_CLASSES
CLIENT_SIDES = ("ca", "cb")
EVIDENCE_TIMEOUT = 15.0


@dataclass
class Injected:
    """One injected fault: what, what the system showed, and how to undo it."""

    detail: dict[str, Any]
    repair: Callable[[], None] | None = None
    repair_after: float = 0.0
    evidence: str = ""
    observed: bool = True


@dataclass
class Injector:
    """Draws and injects the classes that apply to one target."""

    cluster: Cluster | None
    net: NetLab | None
    ttl: float
    rng: random.Random
    clock_file: Path | None = None
    wall_events: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])
    offset: float = 0.0
    brief: bool = False
    """Shortest holds that still pass the TTL (CI's rotations); soaks use the full range."""

    @property
    def backend(self) -> str:
        return self.cluster.backend if self.cluster is not None else ""

    def applies(self, kind: str) -> bool:
        """Whether ``kind`` can be injected on this target."""
        c, net = self.cluster, self.net
        three = c is not None and len(c.nodes) == 3
        if kind == "partition-isolate" and three and self.backend == "zookeeper":
            return True  # the lab's peer proxies (ZooKeeper's peer traffic is all TCP)
        if kind in NET_CLASSES:
            if net is None or not net.namespaced:
                return False
            if kind == "latency-link":
                return netem_available()
            return three
        if kind == "store-pause":
            return c is not None
        if kind == "leader-kill":  # PostgreSQL's lab primary has its own restart path
            return c is not None and c.backend != "postgres"
        if kind == "redis-wipe":
            return c is not None and c.backend == "redis"
        if kind == "member-readd":
            return three and self.backend == "etcd"
        if kind == "clock-step":
            return self.clock_file is not None
        return False

    def inject(self, kind: str) -> Injected | None:
        """Injects one fault of ``kind`` (None when it cannot now, e.g. a node is down)."""
        if self.cluster is not None and kind != "clock-step" and \
                not all(n.running for n in self.cluster.nodes):
            return None
        method = getattr(self, "_" + kind.replace("-", "_"))
        result: Injected | None = method()
        return result

    # -- helpers -------------------------------------------------------------------

    def _labels(self) -> list[str]:
        assert self.net is not None
        return self.net.labels

    def _leader_or_random(self) -> int:
        assert self.cluster is not None
        leader = self.net.store_leader() if self.net is not None else None
        if leader is None and self.backend in ("etcd", "consul", "zookeeper"):
            leader = _store_leader(self.cluster)
        return leader if leader is not None else self.rng.randrange(len(self.cluster.nodes))

    def _heal(self) -> Callable[[], None]:
        assert self.net is not None
        return self.net.faults.heal

    def _hold(self, low: float, high: float) -> float:
        if self.brief:
            high = min(high, low + 0.25)
        return self.rng.uniform(low, high) * self.ttl

    def _observe(self, condition: Callable[[], bool], what: str) -> tuple[bool, str]:
        try:
            wait_until(condition, EVIDENCE_TIMEOUT, what, interval=0.2)
            return True, what
        except LabError:
            return False, f"NOT observed within {EVIDENCE_TIMEOUT:g} s: {what}"

    # -- network classes -----------------------------------------------------------

    def _partition_isolate(self) -> Injected:
        if self.net is None or not self.net.namespaced:
            return self._proxy_isolate()
        labels = self._labels()
        victim = self._leader_or_random()
        if self.backend == "redis":
            for side in CLIENT_SIDES:
                self.net.faults.cut(side, labels[victim])
            self.net.faults.cut("host", labels[victim])
            ok, seen = self._observe(lambda: not _answers(self.net, victim),
                                     f"{labels[victim]} unreachable from the clients")
        else:
            self.net.faults.isolate(labels[victim], labels)
            peer = (victim + 1) % len(labels)
            ok, seen = self._observe(lambda: self.net.sees_peer(peer, victim) is False,  # type: ignore[union-attr]
                                     f"{labels[peer]} reports {labels[victim]} unreachable")
        return Injected({"node": labels[victim]}, self._heal(), self._hold(1.0, 2.5), seen, ok)

    def _proxy_isolate(self) -> Injected:
        """Fallback where nodes are not in namespaces: the lab's peer proxies."""
        cluster = self.cluster
        assert cluster is not None
        victim = self._leader_or_random()
        name = cluster.nodes[victim].name
        cluster.isolate(victim)
        peer = (victim + 1) % len(cluster.nodes)

        def unreachable() -> bool:
            return self.net is not None and self.net.sees_peer(peer, victim) is False

        ok, seen = self._observe(unreachable, f"{name} out of the quorum (peer proxies cut)")
        return Injected({"node": name, "via": "peer proxies"}, lambda: cluster.rejoin(victim),
                        self._hold(1.0, 2.5), seen, ok)

    def _sides(self) -> tuple[list[str], list[str], int]:
        labels = self._labels()
        minority = self._leader_or_random() if self.rng.random() < 0.5 else \
            self.rng.randrange(len(labels))
        return [labels[minority]], [x for x in labels if x != labels[minority]], minority

    def _partition_split(self) -> Injected:
        assert self.net is not None
        small, large, minority = self._sides()
        self.net.faults.partition([*small, "ca"], [*large, "cb"])
        if self.backend == "redis":
            ok, seen = self._observe(lambda: True, "client side A reaches only "
                                     f"{small[0]}, side B {', '.join(large)}")
        else:
            peer = self._labels().index(large[0])
            ok, seen = self._observe(lambda: self.net.sees_peer(peer, minority) is False,  # type: ignore[union-attr]
                                     f"{large[0]} reports {small[0]} unreachable")
        return Injected({"minority": small, "majority": large}, self._heal(),
                        self._hold(1.0, 2.5), seen, ok)

    def _partition_bridge(self) -> Injected:
        assert self.net is not None
        labels = self._labels()
        order = labels[:]
        self.rng.shuffle(order)
        left, via, right = order
        self.net.faults.partition([left, "ca"], [right, "cb"])
        return Injected({"left": left, "via": via, "right": right}, self._heal(),
                        self._hold(1.0, 2.5),
                        f"{left}+A | {right}+B cut; {via} reaches both", True)

    def _loss_one_way(self) -> Injected:
        assert self.net is not None
        labels = self._labels()
        src = labels[self._leader_or_random()]
        if self.backend == "redis":
            dst, src = src, self.rng.choice(CLIENT_SIDES)
        else:
            dst = self.rng.choice([x for x in labels if x != src])
        self.net.faults.one_way(src, dst)
        return Injected({"from": src, "to": dst}, self._heal(), self._hold(1.0, 2.5),
                        f"{src} -> {dst} dropped (output rule), {dst} -> {src} intact", True)

    def _loss_link(self) -> Injected:
        assert self.net is not None
        labels = self._labels()
        a, b = self.rng.sample(labels, 2)
        side = self.rng.choice(CLIENT_SIDES)
        self.net.faults.loss(a, b, 30)
        self.net.faults.loss(side, a, 30)
        return Injected({"link": [a, b], "client": [side, a], "percent": 30}, self._heal(),
                        self._hold(1.0, 2.5), "30% random drop (nft numgen) both ways", True)

    def _latency_link(self) -> Injected:
        assert self.net is not None
        label = self.rng.choice(self._labels())
        ms = self.rng.choice((20, 100, 300))
        self.net.faults.latency(label, ms)
        return Injected({"node": label, "ms": ms}, self._heal(), self._hold(1.0, 2.0),
                        f"netem delay {ms} ms on {label}", True)

    # -- store node classes --------------------------------------------------------

    def _store_pause(self) -> Injected:
        assert self.cluster is not None
        index = self._leader_or_random()
        node = self.cluster.nodes[index]
        node.pause()
        if len(self.cluster.nodes) == 3 and self.backend != "redis":
            ok, seen = self._observe(
                lambda: _store_leader(self.cluster) not in (None, index),
                f"a store election: a node other than paused {node.name} leads")
        else:
            ok, seen = self._observe(lambda: not _serves(node), f"{node.name} answers nothing")
        return Injected({"node": node.name}, node.resume, self._hold(1.5, 2.5), seen, ok)

    def _leader_kill(self) -> Injected:
        assert self.cluster is not None
        index = self._leader_or_random()
        node = self.cluster.nodes[index]
        node.kill()
        ok, seen = True, f"{node.name} killed"
        if len(self.cluster.nodes) == 3 and self.backend != "redis":
            ok, seen = self._observe(
                lambda: _store_leader(self.cluster) not in (None, index),
                f"a new store leader after killing {node.name}")
        return Injected({"node": node.name}, node.restart, self._hold(0.5, 2.0), seen, ok)

    def _redis_wipe(self) -> Injected:
        # The operator rule docs/redis.md and the adapter state for a wiped instance:
        # restart it only after a TTL (as Redlock requires). Restarting at once lets it
        # join a majority that never saw a live holder's key, which no quorum design
        # survives: a soak round that also cut the other instance off the holder found
        # exactly that 21 ms overlap.
        assert self.cluster is not None
        node = self.rng.choice(self.cluster.nodes)
        node.kill()
        node.wipe()
        gone = not node.data_dir.exists()

        def restart_empty() -> None:
            node.start()
            node.wait_serving()

        return Injected({"node": node.name}, restart_empty, self._hold(1.0, 1.5),
                        f"{node.name} killed, its data deleted, restarted empty after a TTL",
                        gone)

    def _member_readd(self) -> Injected:
        assert self.cluster is not None
        node = self.rng.choice(self.cluster.nodes)
        before = _etcd_member_id(self.cluster, node.name)
        node.restart(wipe=True)
        after = _etcd_member_id(self.cluster, node.name)
        return Injected({"node": node.name}, None, 0.0,
                        f"{node.name} re-added: member id {before} -> {after}",
                        before != after and after != "")

    # -- clock ---------------------------------------------------------------------

    def _clock_step(self) -> Injected:
        from tenure.conformance.faults.candidates import step_clock

        assert self.clock_file is not None
        step = self.rng.choice((-3600.0, 3600.0, -86400.0, 600.0))
        self.offset += step
        since = time.monotonic()
        step_clock(self.clock_file, self.offset)
        wanted = self.offset

        def seen() -> bool:
            return any(abs(e["wall"] - time.time() - wanted) < 30 for e in self.wall_events()
                       if e.get("t", 0) > since)

        ok, evidence = self._observe(seen, f"a candidate reads a wall clock {wanted:+.0f} s off")
        return Injected({"step": step, "offset": self.offset}, None, 0.0, evidence, ok)


# -- store probes ----------------------------------------------------------------------


def _serves(node: Any) -> bool:
    try:
        return bool(node.serves())
    except Exception:
        return False


def _answers(net: NetLab | None, index: int) -> bool:
    assert net is not None
    return _serves(net.cluster.nodes[index])


def _store_leader(cluster: Cluster | None) -> int | None:
    return None if cluster is None else store_leader(cluster)


def _etcd_member_id(cluster: Cluster, name: str) -> str:
    for node in cluster.nodes:
        if not node.running:
            continue
        try:
            req = urllib.request.Request(f"http://{node.client_address}/v3/cluster/member/list",
                                         data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=3) as resp:
                members = json.loads(resp.read())["members"]
        except OSError:
            continue
        for m in members:
            if m.get("name") == name:
                return str(m["ID"])
    return ""


# -- failover per fault ----------------------------------------------------------------


def worst_gaps(intervals: list[history.Interval], schedule: list[dict[str, Any]],
               bound: float) -> dict[str, float]:
    """For each fault class, the longest time without a valid leader that overlaps a
    window from the fault to its repair + ``bound`` (fault times: ``at``, monotonic)."""
    spans = sorted((i.start, i.end) for i in intervals)
    gaps: list[tuple[float, float]] = []
    reach = None
    for start, end in spans:
        if reach is not None and start > reach:
            gaps.append((reach, start))
        reach = end if reach is None else max(reach, end)
    worst: dict[str, float] = {}
    for fault in schedule:
        at = fault.get("at")
        if at is None:
            continue
        until = fault.get("repair_at", at) + bound
        longest = max((b - a for a, b in gaps if b > at and a < until), default=0.0)
        worst[fault["fault"]] = max(worst.get(fault["fault"], 0.0), longest)
    return worst
