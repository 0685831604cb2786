"""tenure (``layout=native``) and client-go's LeaderElector on ONE Lease: each sees the
other's leader, exactly one leads at a time (intervals on one CLOCK_MONOTONIC), and the
token keeps rising across both kinds of leader. The Go program is built by
scripts/install-stores.d/21-client-go-elector (k8s.io/client-go v0.34.2).

In the mixed fault test both sides record their leaderships into ONE history in the
conformance format (:mod:`tenure.conformance.suite.history`), checked for S1/S2:

* a tenure candidate process records as everywhere (elected, valid deadlines, lost);
* a client-go leadership starts at its ``OnStartedLeading`` event (the program prints it
  with CLOCK_MONOTONIC, the clock Python's ``time.monotonic`` reads) with token
  ``leaseTransitions`` and no deadline (client-go gives its leader none); it ends when
  the test SIGKILLs it, or when client-go calls ``OnStoppedLeading``. A client-go
  leader paused with SIGSTOP is cut at the pause: once resumed it goes on believing it
  leads (its OnStartedLeading context stays open) until a renewal attempt of
  RenewDeadline fails -- the overlap the test measures and docs/kubernetes.md states.
  Then, with ReleaseOnCancel, client-go v0.34's ``release()`` re-reads the Lease (for
  its resourceVersion) but decides from its OLD observation whether it still holds it:
  when the resumed renewal attempt timed out without reading the Lease, it empties
  the Lease the new holder (t3) holds. tenure's t3 sees that through its watch and
  steps down at once (S1 holds either way); the test accepts both outcomes.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure.childproc import spawn_guarded
from tenure.conformance.lab.cluster import Cluster, find_binary
from tenure.conformance.lab.kubernetes import NAMESPACE, KubernetesCluster
from tenure.conformance.suite import history
from tenure.conformance.suite.harness import CandidateGroup, CandidateProcess

pytestmark = [pytest.mark.kubernetes, pytest.mark.interop]

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = (
    float(s) for s in os.environ.get("TENURE_CLIENT_GO_TIMING", "2,1.5,0.25").split(","))
"""client-go's LeaseDuration, RenewDeadline and RetryPeriod in seconds (default 2 s,
1.5 s, 0.25 s; ``TENURE_CLIENT_GO_TIMING=L,R,P`` to try others: docs/kubernetes.md
names the smallest that pass the mixed fault test below)."""
WAIT = 30.0


class Elector:
    """The client-go program (parent-death guarded), its JSON events in a queue."""

    def __init__(self, cluster: KubernetesCluster, lease: str, identity: str, *,
                 lease_duration: float = LEASE_DURATION, renew_deadline: float = RENEW_DEADLINE,
                 retry_period: float = RETRY_PERIOD, kubeconfig: Path | None = None) -> None:
        binary = find_binary("tenure-client-go-elector", "TENURE_CLIENT_GO_ELECTOR_BIN")
        self.identity = identity
        self.proc = spawn_guarded(
            [binary, "--kubeconfig", str(kubeconfig or cluster.kubeconfig),
             "--namespace", NAMESPACE, "--name", lease, "--id", identity,
             "--lease-duration", f"{lease_duration}s", "--renew-deadline", f"{renew_deadline}s",
             "--retry-period", f"{retry_period}s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float, **match: str) -> dict[str, Any]:
        for event in self.seen:
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, f"client-go elector: no {kind} {match} within {timeout} s: {self.seen}"
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(event)
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event

    def drain(self) -> list[dict[str, Any]]:
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return self.seen

    def pause(self) -> float:
        sent = time.monotonic()
        os.kill(self.proc.pid, signal.SIGSTOP)
        return sent

    def resume(self) -> float:
        sent = time.monotonic()
        os.kill(self.proc.pid, signal.SIGCONT)
        return sent

    def kill(self) -> float:
        sent = time.monotonic()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        return sent


class RecordedElector(Elector):
    """An :class:`Elector` whose leadership goes into a conformance history."""

    def __init__(self, cluster: KubernetesCluster, lease: str, identity: str,
                 history_path: Path, reader: tenure.Client) -> None:
        super().__init__(cluster, lease, identity)
        self.lease, self.history_path, self.reader = lease, history_path, reader
        self.token = -1

    def _record(self, kind: str, t: float, **fields: Any) -> None:
        history.record(self.history_path, kind=kind, cid=self.identity, election=self.lease,
                       token=self.token, t=t, **fields)

    def wait_leading(self, timeout: float) -> float:
        """Waits for OnStartedLeading; records ``elected`` (no deadline) with the token
        the Lease shows (``leaseTransitions``, read while this elector holds it)."""
        started = self.wait_for("leading", timeout)["t"]
        seen = self.reader.election(self.lease).leader()
        assert seen is not None and seen.candidate_id == self.identity, seen
        self.token = seen.token
        self._record("elected", started, deadline=math.inf)
        return float(started)

    def kill(self) -> float:
        sent = super().kill()
        if self.token >= 0:
            self._record("lost", sent, reason="SIGKILL")
        return sent

    def cut(self) -> float:
        """SIGSTOP, the interval cut here (client-go leaders have no deadline)."""
        sent = self.pause()
        self._record("lost", sent, reason="SIGSTOP: no deadline, the interval is cut here")
        return sent

    def record_stop(self) -> None:
        """Ends the interval at OnStoppedLeading if client-go stopped on its own
        earlier than the test cut it (the checker takes the earliest end)."""
        for event in self.drain():
            if event["event"] == "stopped" and self.token >= 0:
                self._record("lost", event["t"], reason="OnStoppedLeading")


def test_client_go_and_tenure_share_one_lease_with_exactly_one_leader(
    kubernetes_cluster: Cluster,
) -> None:
    cluster = kubernetes_cluster
    assert isinstance(cluster, KubernetesCluster)
    lease = f"interop-{time.monotonic_ns()}"
    url = cluster.url + "&layout=native"
    with tenure.connect(url, ttl=2, candidate_id="tenure-a") as a, \
            tenure.connect(url, ttl=2, candidate_id="tenure-b") as b:
        first = a.election(lease).campaign(timeout=20)
        elector = Elector(cluster, lease, "client-go-1")
        try:
            elector.wait_for("new_leader", 20, leader="tenure-a")
            # client-go sees a live leader: it does not take over for several durations.
            time.sleep(3 * LEASE_DURATION)  # a span in which nothing may happen
            assert not first.lost
            assert not [e for e in elector.drain() if e["event"] == "leading"]

            resigned = time.monotonic()
            first.resign()
            leading = elector.wait_for("leading", 20)
            assert leading["t"] > resigned  # one CLOCK_MONOTONIC: no overlap
            seen = b.election(lease).leader()
            assert seen is not None and seen.candidate_id == "client-go-1"
            assert seen.token > first.token

            won: list[tenure.Leadership] = []
            waiter = threading.Thread(
                target=lambda: won.append(b.election(lease).campaign(timeout=60)), daemon=True)
            waiter.start()
            time.sleep(2 * LEASE_DURATION)  # tenure-b waits; client-go keeps renewing
            assert not won, "tenure took a Lease client-go kept renewing"
            killed = time.monotonic()
            elector.kill()
            waiter.join(timeout=60)
            assert won, "tenure did not take over from a killed client-go leader"
            took = won[0]
            assert took.token > seen.token
            # client-go's rule: only after seeing no renewal for the lease duration.
            elapsed = time.monotonic() - killed
            assert elapsed >= LEASE_DURATION - 0.5, elapsed
            print(f"client-go -> tenure failover {elapsed:.2f} s at lease duration "
                  f"{LEASE_DURATION} s; tokens {first.token} {seen.token} {took.token}")

            # And back: a client-go elector started now sees tenure's leader.
            second = Elector(cluster, lease, "client-go-2")
            try:
                second.wait_for("new_leader", 20, leader="tenure-b")
                time.sleep(2 * LEASE_DURATION)
                assert not [e for e in second.drain() if e["event"] == "leading"]
                assert not took.lost
                took.resign()
                second.wait_for("leading", 20)
            finally:
                second.kill()
        finally:
            elector.kill()


def test_sigkill_and_sigstop_of_leaders_of_both_kinds_keep_one_leader_at_a_time(
    kubernetes_cluster: Cluster, tmp_path: Path,
) -> None:
    """tenure candidate processes (``layout=native``, TTL 2 s) and client-go electors
    (2 s / 1.5 s / 0.25 s) lead in turn while leaders of both kinds are SIGKILLed and
    SIGSTOPped; ONE history of both sides has one leader at a time and rising tokens.
    The paused client-go leader, resumed after tenure's t3 took over, believes it leads
    until its renewal attempt gives up (RenewDeadline): that overlap is the documented
    limit of client-go (no deadline), shown here rather than assumed away."""
    cluster = kubernetes_cluster
    assert isinstance(cluster, KubernetesCluster)
    name = f"mixed-{time.monotonic_ns()}"  # a DNS-1123 name: the Lease has the same name
    url = cluster.url + "&layout=native"
    electors: list[RecordedElector] = []
    with CandidateGroup(url, name, tmp_path) as group, \
            tenure.connect(url, ttl=2, candidate_id="reader") as reader:
        path = group.history_path

        def client_go(label: str) -> RecordedElector:
            elector = RecordedElector(cluster, name, f"{label}-{time.monotonic_ns()}", path,
                                      reader)
            electors.append(elector)
            return elector

        def tenure_candidate(label: str) -> CandidateProcess:
            candidate = group.spawn(ttl=2, tick=0.1, name=label)
            candidate.wait_for("started")
            return candidate

        try:
            t1 = tenure_candidate("t1")
            t1_token = t1.wait_for("elected")["token"]
            c1 = client_go("c1")
            c1.wait_for("new_leader", WAIT)  # c1 runs and has read t1's Lease
            t1.kill()  # SIGKILL of a tenure leader: c1 takes over after 2 s unchanged
            c1.wait_leading(WAIT)

            t2 = tenure_candidate("t2")
            c1.kill()  # SIGKILL of a client-go leader: t2 takes over by its own clock
            t2_token = t2.wait_for("elected", WAIT)["token"]

            c2 = client_go("c2")
            c2.wait_for("new_leader", WAIT)
            t2.pause()  # SIGSTOP of a tenure leader: its deadline passes first
            c2.wait_leading(WAIT)
            t2.resume()
            t2.wait_for("lost", WAIT)  # its writes on resuming are refused (checked below)

            t3 = tenure_candidate("t3")
            c2.cut()  # SIGSTOP of a client-go leader
            t3_token = t3.wait_for("elected", WAIT)["token"]
            resumed = c2.resume()
            stopped = c2.wait_for("stopped", WAIT)["t"]
            assert c2.proc.wait(WAIT) == 0  # RunOrDie returned: it gave up the leadership
            # OnStoppedLeading runs after client-go's release() (ReleaseOnCancel), so the
            # Lease now shows whether that release emptied it under t3 (module docstring).
            holder = reader.election(name).leader()
            emptied = holder is None
            if emptied:  # t3 saw it through its watch and stepped down
                lost = t3.wait_for("lost", WAIT)
                assert "names no holder" in lost["reason"], lost
            else:
                assert holder is not None and holder.token == t3_token, holder
                mark = len(t3.events)
                try:
                    t3.wait_for("valid", after=mark)  # t3 still leads after c2 gave up
                except AssertionError as exc:
                    losses = [e for e in t3.events if e["kind"] == "lost"]
                    raise AssertionError(f"{exc}; t3's losses: {losses}") from None
            t3.kill()
        finally:
            for elector in electors:
                elector.kill()
                elector.record_stop()

    tokens = [t1_token, c1.token, t2_token, c2.token, t3_token]
    assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"
    events = history.load(path)
    report = history.check(events)
    assert report.ok, report.summary()
    assert [i.cid.split("-")[0] for i in report.intervals] == ["t1", "c1", "t2", "c2", "t3"]
    assert report.fenced_accepted > 0
    # Without the cut: the resumed client-go leader believed it led until OnStoppedLeading.
    uncut = [e for e in events if not (e["cid"] == c2.identity and e["kind"] == "lost"
                                       and e["t"] < stopped)]
    overlaps = history.check(uncut).violations
    assert len(overlaps) == 1 and "t3" in overlaps[0] and "c2" in overlaps[0], overlaps
    print(f"\nresumed client-go leader believed it led for {stopped - resumed:.3f} s after "
          f"SIGCONT (RenewDeadline {RENEW_DEADLINE} s) while tenure's t3 led; tokens {tokens}"
          + ("; its release() then emptied t3's Lease" if emptied else ""))
