"""tenure (``layout=native``) and client-go's LeaderElector on ONE Lease: each sees the
other's leader, exactly one leads at a time (intervals on one CLOCK_MONOTONIC), and the
token keeps rising across both kinds of leader. The Go program is built by
scripts/install-stores.d/21-client-go-elector (k8s.io/client-go v0.34.2)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any

import pytest

import tenure
from tenure.conformance.lab.cluster import Cluster, find_binary
from tenure.conformance.lab.kubernetes import NAMESPACE, KubernetesCluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.interop]

LEASE_DURATION = 2.0


class Elector:
    """The client-go program, its JSON events in a queue."""

    def __init__(self, cluster: KubernetesCluster, lease: str, identity: str) -> None:
        binary = find_binary("tenure-client-go-elector", "TENURE_CLIENT_GO_ELECTOR_BIN")
        self.proc = subprocess.Popen(
            [binary, "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE,
             "--name", lease, "--id", identity, "--lease-duration", f"{LEASE_DURATION}s",
             "--renew-deadline", "1.5s", "--retry-period", "0.25s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float, **match: str) -> dict[str, Any]:
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

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


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
