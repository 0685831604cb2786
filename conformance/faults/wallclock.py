"""A conformance candidate that also reports the wall clock it sees.

    python -m tenure.conformance.faults.wallclock <candidate arguments>

Runs :func:`tenure.conformance.suite.candidate.main` and, on a daemon thread, prints a
``{"kind": "wall", "wall": time.time(), "t": time.monotonic()}`` line every 0.2 s, so a
test sees the stepped clock (libfaketime) *inside* the candidate process. ``wall`` events
go to stdout only, never to the history file.

libfaketime 0.9.10 (Debian bookworm) with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` makes
``clock_nanosleep`` fail with EINVAL, which is what ``time.sleep`` calls; before anything
else is imported, ``time.sleep`` is routed through a monotonic condition wait (which
libfaketime leaves alone). This is the harness working around the preload, not something
tenure needs.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    length = float(seconds)
    if length < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(length)


time.sleep = _sleep

from tenure.conformance.suite import candidate  # noqa: E402  (after the sleep patch)


def _report() -> None:
    while True:
        line = json.dumps({"kind": "wall", "wall": time.time(), "t": time.monotonic()})
        os.write(1, (line + "\n").encode())  # one write: never torn by the candidate's prints
        time.sleep(0.2)


def main() -> int:
    threading.Thread(target=_report, daemon=True).start()
    return candidate.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
