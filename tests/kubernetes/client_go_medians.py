"""Handover and failover medians of tenure and client-go's LeaderElector on the lab
kube-apiserver, for docs/kubernetes.md. Not a test (pytest does not collect it, CI does
not run it): it prints figures and asserts nothing about time.

    .venv/bin/python tests/kubernetes/client_go_medians.py [--samples 5] [--default-samples 3]

handover = the leader resigns (tenure) or is cancelled with ``ReleaseOnCancel``
(client-go: SIGTERM) until the waiting one leads; failover = the leader is SIGKILLed
until the waiting one leads. Times are CLOCK_MONOTONIC readings of the events both
programs print (tenure candidate processes: ``resign``/``elected``; client-go:
``leading``). Each sample is a fresh election with one leader and one waiter that has
already seen the leader. The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from test_client_go_interop import Elector  # this folder is on sys.path when run as a script

from tenure.conformance.lab import start_cluster
from tenure.conformance.lab.kubernetes import KubernetesCluster
from tenure.conformance.suite.harness import CandidateGroup

TTL = 2
WAIT = 60.0


def tenure_sample(cluster: KubernetesCluster, workdir: Path, kill: bool) -> float:
    name = f"medians-tenure-{time.monotonic_ns()}"
    with CandidateGroup(cluster.url, name, workdir) as group:
        first = group.spawn(ttl=TTL, tick=0.1, hold=None if kill else 6.0, name="a")
        first.wait_for("elected", WAIT)
        second = group.spawn(ttl=TTL, tick=0.1, name="b")
        second.wait_for("started", WAIT)
        time.sleep(1.0)  # let b read the Lease and start waiting (no event says so)
        if kill:
            gone = time.monotonic()
            first.kill()
        else:
            gone = first.wait_for("resign", WAIT)["t"]
        return float(second.wait_for("elected", WAIT)["t"]) - gone


def client_go_sample(cluster: KubernetesCluster, timing: tuple[float, float, float],
                     kill: bool) -> float:
    name = f"medians-client-go-{time.monotonic_ns()}"
    lease, renew, retry = timing
    settings = {"lease_duration": lease, "renew_deadline": renew, "retry_period": retry}
    first = Elector(cluster, name, "a", **settings)
    second: Elector | None = None
    try:
        first.wait_for("leading", WAIT + lease)
        second = Elector(cluster, name, "b", **settings)
        second.wait_for("new_leader", WAIT, leader="a")
        gone = time.monotonic()
        if kill:
            first.kill()
        else:
            os.kill(first.proc.pid, signal.SIGTERM)  # ReleaseOnCancel: it empties the Lease
        return float(second.wait_for("leading", WAIT + 2 * lease)["t"]) - gone
    finally:
        first.kill()
        if second is not None:
            second.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--default-samples", type=int, default=3,
                        help="samples at client-go's defaults (failover takes ~15-20 s each)")
    args = parser.parse_args()
    rows: list[tuple[str, str, list[float], list[float]]] = []
    with start_cluster("kubernetes") as cluster, tempfile.TemporaryDirectory() as tmp:
        assert isinstance(cluster, KubernetesCluster)
        n = args.samples
        rows.append(("tenure (layout=tenure)", f"TTL {TTL} s",
                     [tenure_sample(cluster, Path(tmp), False) for _ in range(n)],
                     [tenure_sample(cluster, Path(tmp), True) for _ in range(n)]))
        for label, timing, count in (
                ("smallest passing the mixed test", (1.0, 0.5, 0.1), n),
                ("the interop tests' default", (2.0, 1.5, 0.25), n),
                ("client-go defaults", (15.0, 10.0, 2.0), args.default_samples)):
            rows.append((f"client-go LeaderElector ({label})",
                         " / ".join(f"{t:g} s" for t in timing),
                         [client_go_sample(cluster, timing, False) for _ in range(count)],
                         [client_go_sample(cluster, timing, True) for _ in range(count)]))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print("| elector | settings | handover median | failover median | samples |")
    print("|---|---|---|---|---|")
    for label, settings, handover, failover in rows:
        print(f"| {label} | {settings} | {statistics.median(handover):.2f} s | "
              f"{statistics.median(failover):.2f} s | {len(handover)} |")
        print(f"  handover {[round(x, 2) for x in handover]} failover "
              f"{[round(x, 2) for x in failover]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
