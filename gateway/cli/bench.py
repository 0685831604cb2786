"""``tenure bench``: handover, failover, loss detection and scale, tenure vs its peers.

    tenure bench --quick                          # a smoke run on SQLite (< 60 s)
    tenure bench --lab all --json bench.json --plot docs/performance.png \\
        --markdown docs/performance.md
    tenure bench --lab zookeeper --lab redis
    tenure bench --backend etcd://127.0.0.1:2379  # your store; peers use its first host

Measures on every store, for tenure and the tools users would otherwise pick there
(tooz, kazoo's Election, redis-py's Lock, a Consul guide loop, tenure via ``tenure
serve``; a deliberately unsafe reference algorithm with ``--lab bully``): resign
handover, uncontended campaign, crash failover next to the TTL, loss detection (cut,
SIGSTOP), idle CPU per minute of 1 leader + 10 waiting candidates (client and store
side, next to kazoo's Election on ZooKeeper), and for tenure the cost of 1..N elections
per client and of N waiters per election. Prints a table, the tenure/peer ratios and
tenure's performance targets (met or missed); the machine is shared, so quote medians
and ratios. See docs/performance.md. Exit status 0 unless a tenure measurement failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tenure.cli.common import non_negative_seconds, positive_int
from tenure.errors import ConfigError

if TYPE_CHECKING:
    from tenure.conformance.benchmarks.runner import Row
    from tenure.conformance.benchmarks.scale import ScaleRow

LAB_ALL = ("sqlite", "etcd", "zookeeper", "consul", "redis", "bully")
SCHEMES = {"zk": "zookeeper", "rediss": "redis", "zookeeper": "zookeeper", "etcd": "etcd",
           "etcds": "etcd", "consul": "consul", "consuls": "consul", "redis": "redis",
           "sqlite": "sqlite", "bully": "bully", "postgresql": "postgres", "postgres": "postgres"}


def _sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "integers, e.g. 1,100,1000") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be >= 1")
    return values


def _window(text: str) -> float:
    """argparse type for ``--idle-window``: a duration > 0 ("30", "30s", "500ms")."""
    value = non_negative_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds, e.g. 30")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: tenure against the peer tools on the same stores",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", metavar="URL", action="append", default=[],
                        help="a store to measure (repeatable)")
    parser.add_argument("--lab", metavar="BACKEND", action="append", default=[],
                        choices=(*LAB_ALL, "all"),
                        help="start a 1-node lab store of BACKEND (repeatable; 'all')")
    parser.add_argument("--json", metavar="FILE", help="write every sample as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write a PNG plot (matplotlib)")
    parser.add_argument("--markdown", metavar="FILE.md",
                        help="write the tables, machine facts and plot link into FILE.md "
                             "between its '<!-- tenure bench: begin/end -->' markers "
                             "(e.g. docs/performance.md)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: render the report (and --plot, --markdown) "
                             "from a JSON file an earlier run wrote")
    parser.add_argument("--quick", action="store_true",
                        help="a few samples each (smoke run; default store: SQLite)")
    parser.add_argument("--handovers", type=positive_int, help="resign handovers (default 50)")
    parser.add_argument("--kills", type=positive_int, help="crash failovers (default 10)")
    parser.add_argument("--detections", type=positive_int, help="cuts and pauses (default 3)")
    parser.add_argument("--campaigns", type=positive_int,
                        help="uncontended campaigns per system (default 100)")
    parser.add_argument("--scale-elections", type=_sizes, metavar="N,N,...",
                        help="elections per client for scale (a) (default 1,100,1000)")
    parser.add_argument("--scale-waiters", type=_sizes, metavar="N,N,...",
                        help="waiters per election for scale (b) (default 10,100,500)")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale runs")
    parser.add_argument("--idle-window", type=_window, metavar="SECONDS",
                        help="window of the idle measurement and of its store baseline "
                             "(default 30)")
    parser.add_argument("--idle-followers", type=positive_int, metavar="N",
                        help="candidates waiting behind the leader in the idle "
                             "measurement (default 10)")
    parser.add_argument("--only", metavar="M,M", help="measurements to run (default all: "
                        "handover,failover,detect-cut,detect-pause,campaign,idle)")
    parser.add_argument("--tools", metavar="T,T", help="tools to run (default all: tenure,"
                        "tenure-serve,tooz,kazoo,redis-lock,python-redis-lock,consul-guide,etcd-lock)")
    parser.set_defaults(handler=run)


def _stores(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(backend, URL or None for a lab store) in the order given."""
    stores: list[tuple[str, str | None]] = []
    for url in args.backend:
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme not in SCHEMES:
            raise ConfigError(f"--backend {url!r}: unknown scheme {scheme!r}; use one of "
                              f"{', '.join(sorted(set(SCHEMES.values())))}")
        stores.append((SCHEMES[scheme], url))
    for name in args.lab:
        stores.extend((b, None) for b in (LAB_ALL if name == "all" else (name,)))
    if not stores:
        stores.append(("sqlite", None))
    return stores


def run(args: argparse.Namespace) -> int:
    from tenure.conformance.benchmarks import report, runner
    from tenure.conformance.benchmarks.systems import MEASUREMENTS

    sizes = runner.Sizes.quick() if args.quick else runner.Sizes()
    overrides = {"handovers": args.handovers, "kills": args.kills,
                 "detections": args.detections, "campaigns": args.campaigns,
                 "scale_elections": args.scale_elections,
                 "scale_waiters": args.scale_waiters, "idle_window": args.idle_window,
                 "idle_followers": args.idle_followers}
    sizes = runner.Sizes(**{**sizes.__dict__,
                            **{k: v for k, v in overrides.items() if v is not None}})
    only = tuple(args.only.split(",")) if args.only else MEASUREMENTS
    unknown = set(only) - set(MEASUREMENTS)
    if unknown:
        raise ConfigError(f"--only: unknown measurement(s) {sorted(unknown)}; choose from "
                          f"{', '.join(MEASUREMENTS)}")
    tools = tuple(args.tools.split(",")) if args.tools else ()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows: list[runner.Row] = []
    scale_rows: list[ScaleRow] = []
    if args.from_json:
        rows, scale_rows, command, facts = report.read_json(Path(args.from_json))
        _write(args, rows, scale_rows, command, progress, facts)
        return 0
    with runner.temp_workdir() as tmp:
        for backend, url in _stores(args):
            progress(f"== {backend} ({url or 'lab'})")
            try:
                with runner.store_for(backend, url, Path(tmp)) as store:
                    rows.extend(runner.run_store(store, sizes, progress, only, tools))
                    if not args.no_scale and (not tools or "tenure" in tools):
                        scale_rows.extend(runner.run_scale(store, sizes, progress))
            except Exception as exc:
                rows.append(runner.Row(backend, "tenure", "store", "failed",
                                       reason=f"the store did not start: {exc}"[:800],
                                       baseline=True))
                progress(f"{backend}: the store did not start: {exc}")
    command = "tenure bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "tenure bench"
    _write(args, rows, scale_rows, command, progress)
    failed = [r for r in rows if r.baseline and r.status == "failed"]
    return 1 if failed else 0


def _write(args: argparse.Namespace, rows: list[Row], scale_rows: list[ScaleRow],
           command: str, progress: Callable[[str], None],
           facts: dict[str, Any] | None = None) -> None:
    from tenure.conformance.benchmarks import report

    print(report.render(rows, scale_rows, command))
    if args.json and not args.from_json:
        report.write_json(Path(args.json), rows, scale_rows, command)
        progress(f"wrote {args.json}")
    if args.plot:
        report.plot(Path(args.plot), rows, scale_rows)
        progress(f"wrote {args.plot}")
    if args.markdown:
        report.update_markdown(Path(args.markdown), report.render(rows, scale_rows, command),
                               Path(args.plot) if args.plot else None, facts)
        progress(f"wrote {args.markdown}")
