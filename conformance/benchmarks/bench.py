"""Handover and failover figures (default: the embedded SQLite backend).

    python -m tenure.conformance.benchmarks.bench [--handovers 60] [--kills 10] [--ttl 1] \
        [--backend URL]

* resign handover: from the leader's ``resign()`` returning to the next candidate's
  ``campaign()`` returning, candidates being separate processes (one host, one
  monotonic clock);
* crash failover: from SIGKILL of the leader process to the next candidate's
  ``campaign()`` returning, next to the TTL in force.

Prints medians and p90; the machine is shared, so quote medians and ratios.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from tenure.conformance.suite.harness import CandidateGroup


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def handovers(backend: str, workdir: Path, count: int) -> list[float]:
    """Seconds from resign returning to the successor's campaign returning."""
    workdir.mkdir(parents=True, exist_ok=True)
    with CandidateGroup(backend, "bench/handover", workdir) as group:
        rounds = count // 2 + 5
        members = [group.spawn(ttl=10, hold=0.02, rounds=rounds, tick=0.01) for _ in range(2)]
        for member in members:
            member.wait_exit(timeout=120)
        events = sorted((e for m in members for e in m.events if e["kind"] in
                         ("resigned", "elected")), key=lambda e: e["t"])
    gaps = []
    for before, after in itertools.pairwise(events):
        if before["kind"] == "resigned" and after["kind"] == "elected":
            gaps.append(after["t"] - before["t"])
    return gaps[:count]


def failovers(backend: str, workdir: Path, count: int, ttl: float) -> list[float]:
    """Seconds from SIGKILL of the leader to the next leader's campaign returning."""
    times = []
    workdir.mkdir(parents=True, exist_ok=True)
    with CandidateGroup(backend, "bench/failover", workdir) as group:
        leader = group.spawn(ttl=ttl)
        leader.wait_for("elected")
        for _ in range(count):
            follower = group.spawn(ttl=ttl)
            follower.wait_for("started")
            time.sleep(0.1)  # let it queue behind the leader
            killed = time.monotonic()
            leader.kill()
            elected = follower.wait_for("elected", timeout=ttl + 30)
            times.append(elected["t"] - killed)
            leader = follower
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenure.conformance.benchmarks.bench")
    parser.add_argument("--handovers", type=int, default=60)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--backend", help="backend URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tenure-bench-") as tmp:
        workdir = Path(tmp)
        backend = args.backend or f"sqlite://{workdir}/bench.db"
        gaps = handovers(backend, workdir / "h", args.handovers) if args.handovers else []
        fails = failovers(backend, workdir / "f", args.kills, args.ttl) if args.kills else []
    if gaps:
        print(
            f"{backend.split(':', 1)[0]} resign handover: n={len(gaps)} "
            f"median={statistics.median(gaps) * 1e3:.2f} ms "
            f"p90={percentile(gaps, 0.9) * 1e3:.2f} ms p99={percentile(gaps, 0.99) * 1e3:.2f} ms"
        )
    if fails:
        print(
            f"{backend.split(':', 1)[0]} crash failover (TTL {args.ttl:g} s): n={len(fails)} "
            f"median={statistics.median(fails) * 1e3:.0f} ms "
            f"p90={percentile(fails, 0.9) * 1e3:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
