"""The SPEC's properties as functions, written once for every backend.

Each takes a :class:`~tenure.conformance.suite.backends.Target`, runs real candidate
processes against it, injects its faults, checks the recorded history, and returns an
:class:`Outcome` with what it measured -- or raises :class:`PropertyFailed` saying
what was violated. The pytest suite (tests/conformance) and ``tenure conformance``
call the same functions.

Non-destructive properties touch only their own elections (candidate crashes, pauses,
resigns); destructive ones kill store nodes and cut clients off (lab clusters only).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenure
from tenure.conformance.suite import history
from tenure.conformance.suite.backends import Target
from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess


class PropertyFailed(AssertionError):
    """A property did not hold; the message says how."""


@dataclass
class Outcome:
    """A property that held, and what was measured (seconds unless named otherwise)."""

    name: str
    measured: dict[str, float] = field(default_factory=dict)
    report: history.Report | None = None


F = TypeVar("F", bound=Callable[..., Outcome])


def labelled(label: str) -> Callable[[F], F]:
    """Gives a property function the short ``label`` reports show."""
    def mark(function: F) -> F:
        function.label = label  # type: ignore[attr-defined]
        return function
    return mark


def label_of(function: Callable[..., Outcome]) -> str:
    """The short label of a property function."""
    return str(getattr(function, "label", function.__name__))


def require(condition: bool, message: str) -> None:
    """Raises PropertyFailed(message) unless ``condition``."""
    if not condition:
        raise PropertyFailed(message)


def checked(group: CandidateGroup) -> history.Report:
    """The history check of ``group``; PropertyFailed on any violation."""
    report = group.check()
    require(report.ok, report.summary())
    return report


@labelled("S1/S2 turns")
def s1_s2_turns(target: Target) -> Outcome:
    """S1/S2: five candidates taking turns never overlap, and tokens strictly rise."""
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("turns"), target.workdir) as group:
        members = [group.spawn(ttl=ttl, hold=0.1, rounds=3) for _ in range(5)]
        for member in members:
            require(member.wait_exit(timeout=120) == 0, member.stderr())
        report = checked(group)
    require(len(report.intervals) == 15, f"expected 15 leaderships, saw {len(report.intervals)}")
    require(report.fenced_accepted > 0 and report.guarded_ok > 0, report.summary())
    return Outcome("S1/S2 turns", {"leaderships": len(report.intervals)}, report)


@labelled("S2 restarts")
def s2_restarts(target: Target) -> Outcome:
    """S2: tokens keep rising after every candidate process is killed and restarted."""
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("restart"), target.workdir) as group:
        first_run = [group.spawn(ttl=ttl, hold=0.05, rounds=2) for _ in range(3)]
        first_run[0].wait_for("elected", timeout=60)
        for member in first_run:
            member.kill()
        second_run = [group.spawn(ttl=ttl, hold=0.05, rounds=2) for _ in range(3)]
        for member in second_run:
            require(member.wait_exit(timeout=120) == 0, member.stderr())
        report = checked(group)
    tokens = [i.token for i in report.intervals]
    require(tokens == sorted(tokens) and len(set(tokens)) == len(tokens), f"tokens {tokens}")
    require(len(tokens) >= 7, f"expected >= 7 leaderships, saw {len(tokens)}")
    return Outcome("S2 restarts", {"leaderships": len(tokens)}, report)


@labelled("S3 paused leader")
def s3_paused_leader(target: Target) -> Outcome:
    """S3: a leader SIGSTOPped past its TTL and resumed reports the loss, and every
    write it then attempts is refused by the fence and by the store."""
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("pause"), target.workdir) as group:
        leader = group.spawn(ttl=ttl, tick=0.05)
        elected = leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        leader.pause()
        paused_at = time.monotonic()
        successor = follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
        follower.wait_for("fenced", accepted=True)
        mark = len(leader.events)
        leader.resume()
        lost = leader.wait_for("lost", after=mark)
        require(leader.wait_exit() == 0, leader.stderr())
        report = checked(group)
    # The resumed leader usually acts once before it notices the loss (it checks only
    # after acting); if the pause hit between sending a write and that check, it just
    # stops. Every write it sent after its successor began must have been refused.
    stale = [e for e in leader.events[mark:] if e["kind"] in ("fenced", "guarded")
             and e["t"] > successor["t"]]
    accepted = [e for e in stale if e.get("accepted", e.get("ok"))]
    require(not accepted, f"stale writes accepted: {accepted}")
    require(successor["token"] > elected["token"], f"{successor} after {elected}")
    require(bool(lost["reason"]), "loss without a reason")
    return Outcome("S3 paused leader", {"takeover": successor["t"] - paused_at,
                                        "stale_writes_refused": len(stale)}, report)


@labelled("L1 resign handover")
def l1_resign_handover(target: Target, rounds: int = 5) -> Outcome:
    """L1: after a resign the next candidate leads promptly (< 2 s; median reported)."""
    ttl = min(max(5.0, target.profile.ttl), target.profile.max_ttl)
    gaps = []
    with CandidateGroup(target.url, target.election("resign"), target.workdir) as group:
        members = [group.spawn(ttl=ttl, hold=0.2, rounds=rounds) for _ in range(2)]
        for member in members:
            require(member.wait_exit(timeout=120) == 0, member.stderr())
        report = checked(group)
    events = sorted((e for m in members for e in m.events if e["kind"] in ("resigned",
                     "elected")), key=lambda e: e["t"])
    for before, after in itertools.pairwise(events):
        if before["kind"] == "resigned" and after["kind"] == "elected" \
                and before["cid"] != after["cid"]:
            gaps.append(after["t"] - before["t"])
    require(bool(gaps), "no handover observed")
    require(max(gaps) < 2.0, f"handover took up to {max(gaps):.3f} s")
    return Outcome("L1 resign handover", {"handover_median": statistics.median(gaps)}, report)


@labelled("L2 crash failover")
def l2_crash_failover(target: Target) -> Outcome:
    """L2: a SIGKILLed leader is replaced within expiry_factor x TTL + slack."""
    ttl = target.profile.ttl
    with CandidateGroup(target.url, target.election("crash"), target.workdir) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        killed_at = time.monotonic()
        leader.kill()
        elected = follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
        report = checked(group)
    took = elected["t"] - killed_at
    require(took < target.profile.failover_bound,
            f"failover took {took:.2f} s > bound {target.profile.failover_bound:g} s")
    return Outcome("L2 crash failover", {"failover": took, "ttl": ttl}, report)


@labelled("L4 observers converge")
def l4_observers_converge(target: Target, changes: int = 3) -> Outcome:
    """L4: observers converge on each new leader, in token order (worst lag reported)."""
    name = target.election("observe")
    seen: list[list[tenure.LeaderInfo | None]] = [[], []]
    lags = []
    ttl = target.profile.ttl
    with tenure.connect(target.url, ttl=ttl) as watcher, tenure.connect(
        target.url, ttl=ttl
    ) as a, tenure.connect(target.url, ttl=ttl) as b:
        observers = [watcher.election(name).on_change(seen[i].append) for i in range(2)]
        try:
            for client in [a, b] * changes:
                lead = client.election(name).campaign(timeout=30)
                won = time.monotonic()
                _wait(_all_saw(seen, lead.token), 10.0,
                      f"observers to see token {lead.token}: {seen}")
                lags.append(time.monotonic() - won)
                lead.resign()
        finally:
            for observer in observers:
                observer.stop()
    for observed in seen:
        tokens = [info.token for info in observed if info is not None]
        require(tokens == sorted(tokens), f"observer saw tokens out of order: {tokens}")
    return Outcome("L4 observers converge", {"convergence_max": max(lags)})


def _all_saw(seen: list[list[tenure.LeaderInfo | None]], token: int) -> Callable[[], bool]:
    return lambda: all(bool(s) and s[-1] is not None and s[-1].token == token for s in seen)


def _wait(condition: Callable[[], bool], timeout: float, what: str,
          story: Callable[[], str] = lambda: "") -> None:
    end = time.monotonic() + timeout
    ready = threading.Event()
    while not condition():
        if time.monotonic() >= end:
            told = story()
            raise PropertyFailed(f"timed out waiting for {what}" + (f"; {told}" if told else ""))
        ready.wait(0.01)


def s4_cut_from_store(target: Target, blackhole: bool) -> Outcome:
    """S4: a leader cut off its store (refused or blackholed) steps down by its own
    deadline, and the other side elects someone only after it (checked by S1)."""
    ttl = target.profile.ttl
    proxy = target.proxy()
    try:
        with CandidateGroup(target.url, target.election("cut"), target.workdir) as group:
            group.backend = proxy.url
            leader = group.spawn(ttl=ttl, name="cut-off")
            leader.wait_for("elected", timeout=60)
            group.backend = target.url
            follower = group.spawn(ttl=ttl, name="majority-side")
            follower.wait_for("started", timeout=60)
            leader.wait_for("valid")
            proxy.cut(blackhole=blackhole)
            cut_at = time.monotonic()
            lost = leader.wait_for("lost", timeout=ttl + 10)
            elected = follower.wait_for("elected", timeout=target.profile.failover_bound + 30)
            proxy.heal()
            report = checked(group)
    finally:
        proxy.close()
    deadlines = [e["deadline"] for e in leader.events if e["kind"] in ("valid", "elected")]
    require(lost["t"] <= max(deadlines) + 0.5, f"lost at {lost['t']}, deadline {max(deadlines)}")
    require(lost["t"] - cut_at <= ttl + 0.5, f"loss noticed {lost['t'] - cut_at:.2f} s after cut")
    return Outcome(f"S4 cut ({'blackholed' if blackhole else 'refused'})",
                   {"loss_detection": lost["t"] - cut_at, "takeover": elected["t"] - cut_at},
                   report)


@labelled("L3 node kill")
def l3_node_kill(target: Target) -> Outcome:
    """L3: with one of three store nodes killed (each in turn), an election keeps or
    regains a leader within a bound (store failover may stretch expiry: PITFALLS)."""
    cluster = target.cluster
    require(cluster is not None and len(cluster.nodes) == 3, "needs a 3-node lab cluster")
    assert cluster is not None
    ttl = target.profile.ttl
    recoveries = []
    with CandidateGroup(target.url, target.election("node-kill"), target.workdir) as group:
        # A leader may lose its lease while the store elects a new node leader (with a
        # 1 s TTL that is expected, PITFALLS): each member campaigns again after a loss,
        # so two kills cannot use up the three members.
        members = [group.spawn(ttl=ttl, rounds=10**6) for _ in range(3)]
        # Any of them may win first: processes started together reach the store in
        # no fixed order (and Redis serves waiters in no order at all).
        _wait(lambda: any(m.has("elected") for m in members), 60, "a first leader")
        for index in range(2):
            killed_at = time.monotonic()
            cluster.nodes[index].kill()
            bound = 3 * target.profile.failover_bound + 30
            since = killed_at + ttl
            _wait(lambda: _acting_after(members, since), bound,  # noqa: B023
                  f"a leader acting after node {index} was killed (at "
                  f"t={killed_at:.2f})", lambda: _story(members))
            recoveries.append(time.monotonic() - killed_at)
            cluster.nodes[index].restart()
            cluster.wait_serving()
        report = checked(group)
    return Outcome("L3 node kill", {"leader_acting_after": max(recoveries)}, report)


ACTING_KINDS = ("valid", "guarded", "fenced")


def _story(members: list[CandidateProcess]) -> str:
    """What each member reported, runs of "valid"/"guarded" events folded into one, and
    the end of its stderr: a failure message that says who held, lost and why."""
    told = []
    for member in members:
        steps: list[str] = []
        for event in list(member.events):
            kind = event["kind"]
            if kind in ACTING_KINDS and steps and steps[-1].startswith("acting"):
                steps[-1] = f"{steps[-1].split('..')[0]}..{event['t']:.2f}"
                continue
            step = "acting" if kind in ACTING_KINDS else kind
            reason = f"({event['reason']})" if "reason" in event else ""
            steps.append(f"{step}@{event['t']:.2f}{reason}")
        told.append(f"{member.name}: {' '.join(steps[-12:])}; stderr: "
                    f"{member.stderr(5).strip()[-400:] or '-'}")
    return " | ".join(told)


def _acting_after(members: list[CandidateProcess], moment: float) -> bool:
    return any(e["kind"] == "valid" and e["t"] > moment for m in members for e in list(m.events))


@labelled("S4 no quorum")
def s4_no_quorum(target: Target) -> Outcome:
    """S4: with two of three store nodes down nobody is elected, and the leader steps
    down by its deadline."""
    cluster = target.cluster
    require(cluster is not None and len(cluster.nodes) == 3, "needs a 3-node lab cluster")
    assert cluster is not None
    ttl = target.profile.ttl
    quiet = 2 * ttl * target.profile.expiry_factor + 1
    with CandidateGroup(target.url, target.election("no-quorum"), target.workdir) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected", timeout=60)
        follower = group.spawn(ttl=ttl)
        follower.wait_for("started", timeout=60)
        cluster.nodes[1].kill()
        cluster.nodes[2].kill()
        killed_at = time.monotonic()
        lost = leader.wait_for("lost", timeout=ttl * target.profile.expiry_factor + 30)
        minority_since = time.monotonic()
        time.sleep(quiet)  # a window in which nobody may be elected
        elected = [e for e in follower.events if e["kind"] == "elected"
                   and e["t"] > minority_since]
        report = checked(group)
        for node in cluster.nodes[1:]:
            node.restart()
        cluster.wait_serving()
    require(elected == [], f"elected without a quorum: {elected}")
    return Outcome("S4 no quorum", {"loss_detection": lost["t"] - killed_at}, report)


NON_DESTRUCTIVE: list[Callable[[Target], Outcome]] = [
    s1_s2_turns, s2_restarts, s3_paused_leader, l1_resign_handover, l2_crash_failover,
    l4_observers_converge,
]
@labelled("S4 cut (refused)")
def s4_cut_refused(target: Target) -> Outcome:
    """S4: a leader whose store connections are refused steps down by its deadline."""
    return s4_cut_from_store(target, blackhole=False)


@labelled("S4 cut (blackholed)")
def s4_cut_blackholed(target: Target) -> Outcome:
    """S4: a leader whose store traffic is silently dropped steps down by its deadline."""
    return s4_cut_from_store(target, blackhole=True)


PATH_FAULTS: list[Callable[[Target], Outcome]] = [s4_cut_refused, s4_cut_blackholed]
DESTRUCTIVE: list[Callable[[Target], Outcome]] = [*PATH_FAULTS, l3_node_kill, s4_no_quorum]
