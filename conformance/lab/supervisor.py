"""The process behind ``tenure lab up --detach``: owns one lab cluster until SIGTERM.

Run as ``python -m tenure.conformance.lab.supervisor NAME BACKEND NODES STATE_DIR
[--persistence] [--fixed-ports]``. It starts the cluster, writes
``STATE_DIR/NAME.json`` (the cluster's description plus ``name`` and
``supervisor_pid``) atomically once the store serves, and stops the cluster and
removes the file on SIGTERM or SIGINT. The store processes carry a parent-death signal,
so they die with this process even if it is SIGKILLed. Errors go to stderr
(``tenure lab up`` points it at ``STATE_DIR/NAME.log``) and exit status 1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tenure.conformance.lab import start_cluster
from tenure.conformance.lab.cluster import LabError
from tenure.conformance.lab.compose import FIXED_PORTS


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    name, backend, nodes, state_dir = argv[0], argv[1], int(argv[2]), Path(argv[3])
    options: dict[str, Any] = {"persistence": True} if "--persistence" in argv[4:] else {}
    if "--fixed-ports" in argv[4:]:
        options["client_ports"] = FIXED_PORTS[backend][nodes]
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    state = state_dir / f"{name}.json"
    try:
        cluster = start_cluster(backend, nodes, **options)
    except (LabError, ValueError) as exc:
        print(f"tenure lab: {exc}", file=sys.stderr)
        return 1
    try:
        with cluster:
            info = cluster.describe() | {"name": name, "supervisor_pid": os.getpid()}
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(state)
            while True:
                time.sleep(3600)
    finally:
        state.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
