"""``tenure conformance``: check a store deployment against the contract.

    tenure conformance --backend etcd://10.0.0.5:2379            # non-destructive
    tenure conformance --backend URL --destructive --duration 60  # + cuts between us and it
    tenure conformance --lab redis --json report.json             # everything, on lab clusters

Non-destructive (the default) creates and removes only its own elections under
``conformance/`` on the store: candidate processes crash, pause and resign; each
history is checked for the safety properties S1-S3 of docs/conformance.md (one leader
at a time, increasing fencing tokens, a paused leader's writes fail). The liveness
properties L1-L4 measure handover, failover and observers. ``--destructive`` adds
faults on the path between this machine and the store (local proxies: only tenure's
own clients are cut off) and, with ``--duration``, a seeded chaos run of them.
``--lab BACKEND`` starts local clusters (1 node, then 3 nodes; PostgreSQL: 1 node, with
the path faults too) and runs everything, store-node kills included.
Prints a table of property x backend with pass/fail and the measured bounds; exit
status 0 when every property held, 1 otherwise.

Soak mode (``--soak MINUTES``) runs seeded chaos rounds back to back instead (round i has
seed SEED+i; ``--duration`` sets the round length, default 20 s) with a running count
and a progress display, saves every failing history for replay, and ends with a table:
faults survived per class, leaderships, violations, the worst failover per class.
``--lab BACKEND --soak`` runs on a 3-node lab cluster with every store node in its own
network namespace (ZooKeeper: on 127.0.0.1; PostgreSQL: 1 node) and draws every fault
class that applies (tenure.conformance.faults); ``--backend URL --destructive --soak``
draws the candidate, path and clock faults. Exit status 0 only with no violation.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tenure.cli.common import non_negative_seconds, ttl_seconds
from tenure.config import parse_backend_url
from tenure.errors import ConfigError

LAB_BACKENDS = ("etcd", "zookeeper", "consul", "redis", "postgres")
SCHEME_PROFILES = {"zk": "zookeeper", "rediss": "redis", "postgresql": "postgres"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "conformance", help="check a store deployment against the contract (safety and "
        "liveness properties)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--backend", metavar="URL", help="the store deployment to check")
    where.add_argument("--lab", choices=LAB_BACKENDS, metavar="BACKEND",
                       help="start local clusters of BACKEND and run everything")
    parser.add_argument("--destructive", action="store_true",
                        help="also cut this machine's clients off the store (proxies)")
    parser.add_argument("--duration", type=non_negative_seconds, default=0.0,
                        metavar="SECONDS", help="length of a chaos run (default 0: none)")
    parser.add_argument("--seed", type=int, help="chaos seed (default: random, printed)")
    parser.add_argument("--ttl", type=ttl_seconds, metavar="SECONDS",
                        help="session TTL, e.g. 2 or 2s (default: per backend)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--soak", type=positive_minutes, metavar="MINUTES",
                        help="run seeded chaos rounds back to back for MINUTES and count "
                        "faults, leaderships and violations")
    parser.set_defaults(handler=run)


Row = dict[str, Any]


def positive_minutes(text: str) -> float:
    """argparse type for ``--soak``: minutes, a number > 0 ("30", "0.5")."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"--soak takes a number of minutes > 0, e.g. --soak 30; got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from tenure.conformance.suite import properties
    from tenure.conformance.suite.backends import PROFILES, Profile, Target
    from tenure.conformance.suite.chaos import PROCESS_FAULTS, ChaosConfig, run_chaos

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rows: list[Row] = []
    console = Console()

    def profile_for(scheme: str) -> Profile:
        base = PROFILES.get(SCHEME_PROFILES.get(scheme, scheme))
        if base is None:
            raise ConfigError(f"no conformance profile for backend scheme {scheme!r}")
        return base if args.ttl is None else Profile(base.name, args.ttl, base.expiry_factor,
                                                     base.slack, base.needs_cluster)

    if args.soak is not None:
        from tenure.conformance.faults.soak import run_cli

        return run_cli(args, seed, console, profile_for)

    def check(target: Target, label: str,
              checks: list[Callable[[Target], properties.Outcome]],
              chaos_faults: tuple[str, ...] | None) -> None:
        for prop in checks:
            name = properties.label_of(prop)
            rows.append(_run_one(prop, target, label, name, console))
        if chaos_faults is not None and args.duration > 0:
            faults = chaos_faults

            def chaos(t: Target) -> properties.Outcome:
                report = run_chaos(t, ChaosConfig(seed, args.duration, faults=faults),
                                   t.workdir / "chaos")
                properties.require(report.ok, report.summary())
                return properties.Outcome("chaos", {
                    "faults": sum(report.faults.values()),
                    "leaderships": len(report.check.intervals) if report.check else 0,
                })

            rows.append(_run_one(chaos, target, label, f"chaos seed={seed}", console))

    with tempfile.TemporaryDirectory(prefix="tenure-conformance-") as tmp:
        workdir = Path(tmp)
        if args.backend:
            url, _ = parse_backend_url(args.backend)
            if args.destructive and not url.hosts:
                raise ConfigError(
                    f"--destructive cuts the network path to the store, so it needs a store "
                    f"reached over the network; {url.scheme} is embedded: drop --destructive"
                )
            target = Target(profile_for(url.scheme), args.backend, None, workdir)
            checks = list(properties.NON_DESTRUCTIVE)
            faults: tuple[str, ...] = PROCESS_FAULTS
            if args.destructive:
                checks += properties.PATH_FAULTS
                faults = (*PROCESS_FAULTS, "cut", "latency")
            check(target, url.redacted, checks, faults)
        else:
            from tenure.conformance.lab import start_cluster

            profile = profile_for(args.lab)
            # A store without a cluster of its own (PostgreSQL: one primary) gets the
            # path faults on its single node instead of the 3-node runs.
            single = list(properties.NON_DESTRUCTIVE)
            if not profile.needs_cluster:
                single += properties.PATH_FAULTS
            with start_cluster(args.lab, nodes=1) as one:
                check(Target(profile, one.url, one, workdir / "x1"), f"{args.lab} x1",
                      single, PROCESS_FAULTS)
            if profile.needs_cluster:
                with start_cluster(args.lab, nodes=3) as cluster:
                    check(Target(profile, cluster.url, cluster, workdir / "x3"),
                          f"{args.lab} x3", list(properties.DESTRUCTIVE),
                          (*PROCESS_FAULTS, "node-kill", "cut", "latency"))
    _print_table(console, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": seed, "results": rows}, indent=1))
    return 0 if all(row["ok"] for row in rows) else 1


def _run_one(prop: Callable[[Any], Any], target: Any, label: str, name: str,
             console: Console) -> Row:
    from tenure.conformance.suite.properties import PropertyFailed

    began = time.monotonic()
    target.workdir.mkdir(parents=True, exist_ok=True)
    with console.status(f"{label}: {name}"):
        try:
            outcome = prop(target)
        except (PropertyFailed, AssertionError) as exc:
            return {"backend": label, "property": name, "ok": False, "measured": {},
                    "detail": str(exc), "seconds": time.monotonic() - began}
        except Exception as exc:  # a store that cannot be reached fails the property
            return {"backend": label, "property": name, "ok": False, "measured": {},
                    "detail": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - began}
    return {"backend": label, "property": name, "ok": True, "measured": outcome.measured,
            "detail": "", "seconds": time.monotonic() - began}


def _print_table(console: Console, rows: list[Row]) -> None:
    table = Table(title="tenure conformance")
    for column in ("backend", "property", "result", "measured", "time"):
        table.add_column(column)
    for row in rows:
        measured = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row["measured"].items()
        )
        result = "[green]pass[/]" if row["ok"] else "[red]FAIL[/]"
        table.add_row(row["backend"], row["property"], result, measured,
                      f"{row['seconds']:.1f}s")
    console.print(table)
    for row in rows:
        if not row["ok"]:
            console.print(f"[red]{row['backend']} {row['property']}:[/] {row['detail']}")
