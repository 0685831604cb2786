"""``tenure lab``: a real store on this machine in one command.

    tenure lab up etcd --nodes 3          # prints etcd://127.0.0.1:...; Ctrl-C stops it
    tenure lab up consul --detach --json  # leaves it running; prints URL, pids, ports, dirs
    tenure lab up postgres --nodes 2      # a primary and a synchronous standby
    tenure lab up kubernetes              # kube-apiserver over etcd; prints its kubeconfig
    tenure lab status                     # detached labs and whether their nodes run
    tenure lab down [NAME]                # stops one detached lab (default: all)

Clusters listen on 127.0.0.1 on ports chosen at start (see docs/lab.md). A detached lab is
owned by a supervisor process whose state file lives in
``${XDG_RUNTIME_DIR:-/tmp}/tenure-lab/NAME.json``; its store processes die with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
BACKENDS = ("etcd", "zookeeper", "consul", "redis", "postgres", "kubernetes")


def state_dir() -> Path:
    """Where detached labs keep their state files."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "tenure-lab"


def register(subparsers: Any) -> None:
    """Adds ``lab`` with ``up``, ``status`` and ``down`` to the ``tenure`` parser."""
    lab = subparsers.add_parser(
        "lab", help="start local etcd/ZooKeeper/Consul/Redis/PostgreSQL clusters for development",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="start a cluster and print its backend URL")
    up.add_argument("backend", choices=BACKENDS, metavar="BACKEND",
                    help="one of: " + ", ".join(BACKENDS))
    up.add_argument("--nodes", type=int, choices=(1, 2, 3), default=1,
                    help="1 or 3 servers (Redis: independent instances; PostgreSQL: 1, or 2 "
                    "= a primary and a synchronous standby); default 1")
    up.add_argument("--persistence", action="store_true",
                    help="Redis only: append-only file, so restarts keep data")
    up.add_argument("--json", action="store_true",
                    help="print URL, nodes, pids, ports and data dirs as JSON")
    up.add_argument("--detach", action="store_true",
                    help="leave the cluster running; stop it with `tenure lab down`")
    up.add_argument("--name", help="name of a detached lab (default: the backend)")
    up.add_argument("--fixed-ports", action="store_true",
                    help="use the client ports of compose/BACKEND-N.yml (e.g. etcd 2379) "
                    "instead of free ones, so URLs match the compose files")
    up.set_defaults(handler=_up)

    status = sub.add_parser("status", help="list detached labs")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    down = sub.add_parser("down", help="stop detached labs")
    down.add_argument("name", nargs="?", help="the lab to stop (default: all)")
    down.set_defaults(handler=_down)


# -- up ------------------------------------------------------------------------------


def _print_cluster(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(info["url"])
    if "kubeconfig" in info:  # kubernetes: what kubectl and client-go take
        print(f"  kubeconfig  {info['kubeconfig']}", file=sys.stderr)
    for node in info["nodes"]:
        print(f"  {node['name']:<11} pid {node['pid']}  {node['client_address']}"
              f"  data {node['data_dir']}", file=sys.stderr)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.persistence:
        options["persistence"] = True
    if args.fixed_ports:
        from tenure.conformance.lab.compose import FIXED_PORTS

        options["client_ports"] = FIXED_PORTS[args.backend][args.nodes]
    return options


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _up(args: argparse.Namespace) -> int:
    if args.persistence and args.backend != "redis":
        print("tenure lab up: --persistence applies to redis only", file=sys.stderr)
        return 2
    from tenure.conformance.lab import BACKENDS as LAB_CLUSTERS

    counts = LAB_CLUSTERS[args.backend].node_counts
    if args.nodes not in counts:
        print(f"tenure lab up: {args.backend} runs with --nodes "
              f"{' or '.join(map(str, counts))}", file=sys.stderr)
        return 2
    if args.fixed_ports:
        from tenure.conformance.lab.compose import FIXED_PORTS

        if args.backend not in FIXED_PORTS:
            print(f"tenure lab up: --fixed-ports is not offered for {args.backend}",
                  file=sys.stderr)
            return 2
    if args.detach:
        return _up_detached(args)
    from tenure.conformance.lab import LabError, start_cluster

    options = _options(args)
    try:
        cluster = start_cluster(args.backend, args.nodes, **options)
    except LabError as exc:
        print(f"tenure lab up: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # Also SIGINT: a shell starts background jobs with SIGINT ignored, and Python then
    # keeps it ignored; `kill -INT` must still stop the lab.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    with cluster:
        _print_cluster(cluster.describe(), args.json)
        print(f"tenure lab: {args.backend} x{args.nodes} up in {cluster.start_time:.2f} s; "
              "Ctrl-C stops it", file=sys.stderr)
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    print("tenure lab: stopped", file=sys.stderr)
    return EXIT_OK


def _up_detached(args: argparse.Namespace) -> int:
    name = args.name or args.backend
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    existing = _read_state(directory / f"{name}.json")
    if existing is not None and _pid_alive(existing.get("supervisor_pid")):
        print(f"tenure lab up: a lab named {name!r} is already up ({existing['url']}); "
              f"run `tenure lab down {name}` or pass --name", file=sys.stderr)
        return EXIT_FAILED
    state = directory / f"{name}.json"
    log = directory / f"{name}.log"
    state.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tenure.conformance.lab.supervisor", name, args.backend,
            str(args.nodes), str(directory)]
    if args.persistence:
        argv.append("--persistence")
    if args.fixed_ports:
        argv.append("--fixed-ports")
    with open(log, "wb") as err:
        supervisor = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err,
                                      start_new_session=True)
    deadline = time.monotonic() + 180
    while not state.exists():
        if supervisor.poll() is not None:
            print(f"tenure lab up: the cluster did not start:\n{log.read_text()}",
                  file=sys.stderr)
            return EXIT_FAILED
        if time.monotonic() > deadline:
            supervisor.terminate()
            print(f"tenure lab up: timed out; see {log}", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.05)
    info = _read_state(state)
    assert info is not None
    _print_cluster(info, args.json)
    print(f"tenure lab: {name} is up (supervisor pid {supervisor.pid}); "
          f"stop it with `tenure lab down {name}`", file=sys.stderr)
    return EXIT_OK


# -- status / down -------------------------------------------------------------------


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _labs() -> list[dict[str, Any]]:
    """Detached labs whose supervisor runs; state files of dead ones are removed."""
    labs = []
    for path in sorted(state_dir().glob("*.json")):
        info = _read_state(path)
        if info is None or not _pid_alive(info.get("supervisor_pid")):
            path.unlink(missing_ok=True)
            continue
        labs.append(info)
    return labs


def _status(args: argparse.Namespace) -> int:
    labs = _labs()
    for info in labs:
        for node in info["nodes"]:
            node["running"] = _pid_alive(node.get("pid"))
    if args.json:
        print(json.dumps(labs, indent=2))
        return EXIT_OK
    if not labs:
        print("no detached lab is running (start one with `tenure lab up BACKEND --detach`)")
    for info in labs:
        running = sum(1 for n in info["nodes"] if n["running"])
        print(f"{info['name']}: {info['url']}  ({running}/{len(info['nodes'])} nodes running, "
              f"supervisor pid {info['supervisor_pid']})")
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    labs = _labs()
    if args.name is not None:
        labs = [info for info in labs if info["name"] == args.name]
        if not labs:
            print(f"tenure lab down: no detached lab named {args.name!r} is running "
                  "(see `tenure lab status`)", file=sys.stderr)
            return EXIT_FAILED
    for info in labs:
        pid = info["supervisor_pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # its stores die with it (parent-death signal)
        (state_dir() / f"{info['name']}.json").unlink(missing_ok=True)
        print(f"tenure lab: {info['name']} stopped")
    return EXIT_OK
