"""Chaos runs: a seeded, randomized schedule of faults against one election, checked.

    report = run_chaos(target, ChaosConfig(seed=7, duration=30), workdir)
    assert report.ok, report.summary()

Candidates (separate processes) campaign, hold for a random time, resign and campaign
again, while a schedule drawn from ``random.Random(seed)`` injects: SIGKILL of a
candidate (a fresh one replaces it), SIGSTOP/SIGCONT of a candidate for up to 2.5 TTL,
and on store backends with a lab cluster: kill/restart of a store node, cutting the
candidates that reach the store through a proxy (refused or blackholed), and latency on
that path. The same seed gives the same schedule (the system's answers differ run to
run, as timing does). At the end every fault is healed, the history is checked for
S1/S2/S3, and a failing run saves its history and schedule for replay
(``python -m tenure.conformance.suite.replay FILE``).

Kernel-level fault classes (:mod:`tenure.conformance.faults.classes`: partitions in
network namespaces, one-way and random loss, store-leader pauses and kill loops, a Redis
instance restarted empty, an etcd member re-added, candidates' wall clocks stepped) are
drawn when named in ``faults`` and the target supports them: network classes need a
cluster started by :class:`tenure.conformance.faults.lab.NetLab`; then candidates are
spawned in turn into client namespaces A and B and the host, so partitions have
candidates on both sides. ``clock-step`` runs every candidate under libfaketime.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenure.conformance.faults import classes
from tenure.conformance.faults.candidates import spawn as spawn_candidate
from tenure.conformance.faults.lab import net_of
from tenure.conformance.lab.proxy import ProxyGroup
from tenure.conformance.suite import history
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess

PROCESS_FAULTS = ("kill", "pause")
STORE_FAULTS = ("node-kill", "cut", "latency")
FAULT_CLASSES = classes.CLASSES
ALL_FAULTS = PROCESS_FAULTS + STORE_FAULTS + FAULT_CLASSES


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run: seed, duration (s, from the first leader), number of
    candidates, fault kinds."""

    seed: int
    duration: float = 20.0
    candidates: int = 4
    faults: tuple[str, ...] = PROCESS_FAULTS + STORE_FAULTS
    rotate: bool = False
    """Draw the applicable kinds in a seeded rotation instead of at random (each as often
    as the others) and run past ``duration`` until each was
    injected once (CI's short runs of every fault class; soak rounds)."""
    brief: bool = False
    """Shortest fault holds that still pass the TTL, and a faster pace (CI)."""


@dataclass
class ChaosReport:
    """What a run did and what the checker found."""

    seed: int
    backend: str
    faults: Counter[str] = field(default_factory=Counter)
    schedule: list[dict[str, Any]] = field(default_factory=list)
    repairs: list[dict[str, Any]] = field(default_factory=list)
    """Each repair as it was made: ``t`` (s from the start), ``at`` (monotonic), ``repair``
    (resume, restart, heal, no-latency, call-net, call-node) and its ``subject``."""
    check: history.Report | None = None
    saved: str = ""
    worst_failover: dict[str, float] = field(default_factory=dict)
    unobserved: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the history has no violation and someone led."""
        return self.check is not None and self.check.ok and bool(self.check.intervals)

    def summary(self) -> str:
        """One paragraph: seed, faults injected, the checker's verdict."""
        faults = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items())) or "none"
        verdict = self.check.summary() if self.check else "not checked"
        saved = f"\nsaved for replay: {self.saved}" if self.saved else ""
        return f"chaos {self.backend} seed={self.seed}: faults: {faults}; {verdict}{saved}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        check = self.check
        return {
            "seed": self.seed, "backend": self.backend, "faults": dict(self.faults),
            "leaderships": len(check.intervals) if check else 0,
            "violations": check.violations if check else [], "ok": self.ok,
            "worst_failover": self.worst_failover, "unobserved": self.unobserved,
        }


class _Run:
    """The mutable state of one run: members, pending repairs, the schedule log."""

    def __init__(self, target: Target, config: ChaosConfig, workdir: Path) -> None:
        self.target = target
        self.config = config
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        cluster = target.cluster
        path_faults = {"cut", "latency"} & set(config.faults)
        networked = target.profile.needs_cluster
        self.proxy: ProxyGroup | None = target.proxy() if path_faults and networked else None
        self.group = CandidateGroup(target.url, target.election("chaos"), workdir)
        self.repairs: list[tuple[float, str, Any]] = []
        self.report = ChaosReport(config.seed, target.profile.name)
        self.net = net_of(cluster)
        if self.net is not None and not self.net.namespaced:
            self.net = None  # nodes on 127.0.0.1 (ZooKeeper): candidates stay on the host
        if self.net is not None:
            for side in classes.CLIENT_SIDES:
                if side not in self.net.sandbox.namespaces:
                    self.net.add_client(side)
        clock = workdir / "wallclock" if "clock-step" in config.faults else None
        self.injector = classes.Injector(cluster, net_of(cluster), target.profile.ttl, self.rng,
                                         clock_file=clock, wall_events=self.wall_events,
                                         brief=config.brief)
        self.rotation: list[str] = []
        self.kinds = [
            k for k in config.faults
            if k in PROCESS_FAULTS or (k == "node-kill" and cluster is not None)
            or (k in path_faults and self.proxy is not None)
            or (k in FAULT_CLASSES and self.injector.applies(k))
        ]

    def log(self, kind: str, **detail: Any) -> dict[str, Any]:
        self.report.faults[kind] += 1
        now = time.monotonic()
        entry = {"t": now - self.started, "at": now, "fault": kind, **detail}
        self.report.schedule.append(entry)
        return entry

    def wait_for_a_leader(self, timeout: float) -> None:
        """Waits (on the members' event streams) until some member was elected."""
        deadline = time.monotonic() + timeout
        while not any(m.has("elected") for m in self.group.members):
            if time.monotonic() > deadline:
                raise AssertionError(f"nobody elected within {timeout:g} s of the start")
            # Each wait is on a member's event condition, a slice at a time across members.
            with contextlib.suppress(AssertionError):
                self.group.members[0].wait_for("elected", timeout=0.2)

    def rotated(self) -> bool:
        """True once every applicable kind was injected (``rotate``: the run's minimum)."""
        return set(self.kinds) <= set(self.report.faults)

    def wall_events(self) -> list[dict[str, Any]]:
        return [e for m in self.group.members for e in list(m.events) if e["kind"] == "wall"]

    def spawn(self) -> CandidateProcess:
        index = len(self.group.members)
        via_proxy = self.proxy is not None and index % 2 == 1
        self.group.backend = self.proxy.url if via_proxy and self.proxy else self.target.url
        hold = round(self.rng.uniform(0.2, 2.0), 2)
        clock = self.injector.clock_file
        if self.net is None and clock is None:
            return self.group.spawn(ttl=self.target.profile.ttl, hold=hold, rounds=10**6,
                                    tick=0.05)
        # Namespaced targets: sides A, B and the host in turn (the host ones may use the
        # proxy, which listens on the host's loopback only).
        side = classes.CLIENT_SIDES[index % 3] if self.net and index % 3 < 2 else None
        netns = self.net.sandbox.namespaces[side].prefix if self.net and side else None
        if netns is not None:
            self.group.backend = self.target.url
        return spawn_candidate(self.group, ttl=self.target.profile.ttl, hold=hold,
                               rounds=10**6, tick=0.05, netns=netns, clock_file=clock)

    def running(self) -> list[CandidateProcess]:
        return [m for m in self.group.members if m.process.poll() is None]

    def inject(self) -> None:
        if self.config.rotate:
            if not self.rotation:
                self.rotation = self.rng.sample(self.kinds, len(self.kinds))
            kind = self.rotation[0]
            before = self.report.faults[kind]
            self._inject(kind)
            if self.report.faults[kind] > before or kind not in FAULT_CLASSES:
                self.rotation.pop(0)  # a class blocked by a pending repair waits its turn
            return
        self._inject(self.rng.choice(self.kinds))

    def _inject(self, kind: str) -> None:
        ttl = self.target.profile.ttl
        now = time.monotonic()
        members = self.running()
        if kind == "kill" and members:
            victim = self.rng.choice(members)
            victim.kill()
            self.log(kind, candidate=victim.name)
            self.spawn()
        elif kind == "pause" and members:
            victim = self.rng.choice(members)
            if any(r[1] == "resume" and r[2] is victim for r in self.repairs):
                return
            victim.pause()
            self.repairs.append((now + self.rng.uniform(0.2, 2.5) * ttl, "resume", victim))
            self.log(kind, candidate=victim.name)
        elif kind == "node-kill" and self.target.cluster is not None:
            nodes = [n for n in self.target.cluster.nodes if n.running]
            if len(nodes) < len(self.target.cluster.nodes) or any(
                    r[1] in ("call-net", "call-node") for r in self.repairs):
                return  # one node down at a time (and none during a partition) keeps a majority
            node = self.rng.choice(nodes)
            node.kill()
            self.repairs.append((now + self.rng.uniform(1.0, 3.0), "restart", node))
            self.log(kind, node=node.name)
        elif kind == "cut" and self.proxy is not None:
            if any(r[1] == "heal" for r in self.repairs):
                return
            blackhole = self.rng.random() < 0.5
            self.proxy.cut(blackhole=blackhole)
            self.repairs.append((now + self.rng.uniform(0.5, 2.5) * ttl, "heal", None))
            self.log(kind, blackhole=blackhole)
        elif kind == "latency" and self.proxy is not None:
            ms = self.rng.choice((20, 100, 300))
            self.proxy.latency(ms)
            self.repairs.append((now + self.rng.uniform(0.5, 2.0) * ttl, "no-latency", None))
            self.log(kind, ms=ms)
        elif kind in FAULT_CLASSES:
            if any(r[1] in ("call-net", "call-node", "restart") for r in self.repairs):
                # One at a time: each heal removes every rule, and a node fault during a
                # partition leaves no majority (an etcd member re-add would stall).
                return
            done = self.injector.inject(kind)
            if done is None:
                return
            entry = self.log(kind, evidence=done.evidence, observed=done.observed,
                             **done.detail)
            if not done.observed:
                self.report.unobserved.append(f"{kind}: {done.evidence}")
            if done.repair is not None:
                due = time.monotonic() + done.repair_after
                entry["repair_at"] = due
                lane = "call-net" if kind in classes.NET_CLASSES else "call-node"
                self.repairs.append((due, lane, done.repair))

    def repair_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [r for r in self.repairs if everything or r[0] <= now]
        self.repairs = [r for r in self.repairs if r not in due]
        # Heal the network before restarting nodes: a restart waits for a serving cluster.
        due.sort(key=lambda r: r[1] in ("restart", "call-node"))
        for _, action, subject in due:
            done_at = time.monotonic()
            self.report.repairs.append({"t": done_at - self.started, "at": done_at,
                                        "repair": action,
                                        "subject": getattr(subject, "name", None)
                                        or getattr(subject, "__qualname__", None)})
            if action == "resume":
                subject.resume()
            elif action == "restart":
                subject.restart()
            elif action == "heal" and self.proxy is not None:
                self.proxy.heal()
            elif action == "no-latency" and self.proxy is not None:
                self.proxy.latency(0)
            elif action in ("call-net", "call-node"):
                subject()


def run_chaos(target: Target, config: ChaosConfig, workdir: Path) -> ChaosReport:
    """Runs one seeded chaos schedule against ``target`` and checks the history."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(target, config, workdir)
    try:
        for _ in range(config.candidates):
            run.spawn()
        run.group.members[0].wait_for("started", timeout=60)
        run.wait_for_a_leader(timeout=60)
        # The duration counts from the first leader, not from the spawns: on loaded
        # cores starting the candidates alone took 15 s of a 20 s run (one fault).
        end = time.monotonic() + config.duration
        # rotate: past the duration until every kind was injected, within 2 minutes more.
        while time.monotonic() < end or (config.rotate and not run.rotated()
                                          and time.monotonic() < end + 120):
            # The pace of the schedule, not synchronisation: faults land at random times.
            pace = (0.2, 0.6) if config.brief else (0.2, 1.2)
            time.sleep(run.rng.uniform(*pace) * target.profile.ttl)
            run.repair_due()
            run.inject()
        run.repair_due(everything=True)
        if target.cluster is not None:
            target.cluster.wait_serving()
    finally:
        run.repair_due(everything=True)
        run.group.close()
        if run.proxy is not None:
            run.proxy.close()
    events = history.load(run.group.history_path) if run.group.history_path.exists() else []
    run.report.check = history.check(events)
    run.report.worst_failover = classes.worst_gaps(
        run.report.check.intervals, run.report.schedule, target.profile.failover_bound)
    if not run.report.ok:
        run.report.saved = str(save(run.report, run.group.history_path))
    return run.report


def save(report: ChaosReport, history_path: Path) -> Path:
    """Copies a failing run's history and schedule under ``artifacts/failing-histories``."""
    folder = Path("artifacts") / "failing-histories"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"chaos-{report.backend}-seed{report.seed}-{time.time_ns()}"
    target = stem.with_suffix(".jsonl")
    target.write_bytes(history_path.read_bytes() if history_path.exists() else b"")
    stem.with_suffix(".schedule.json").write_text(
        json.dumps({"seed": report.seed, "backend": report.backend,
                    "schedule": report.schedule, "repairs": report.repairs}, indent=1)
    )
    return target
