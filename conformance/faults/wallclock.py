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

import io
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


class _LineStdout(io.TextIOBase):
    """stdout for two threads: each thread's text is kept until its newline, then the
    whole line goes out in one locked ``write`` -- ``print`` writes the text and the
    newline separately (one syscall each when unbuffered), so lines of the candidate and
    of the reporter could otherwise interleave and be lost to the JSON reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        *lines, rest = pending.split("\n")
        self._pending.text = rest
        if lines:
            data = "".join(line + "\n" for line in lines).encode()
            with self._lock:
                os.write(1, data)
        return len(text)

    def flush(self) -> None:
        pass


def _report() -> None:
    while True:
        line = json.dumps({"kind": "wall", "wall": time.time(), "t": time.monotonic()})
        print(line, flush=True)
        time.sleep(0.2)


def main() -> int:
    sys.stdout = _LineStdout()
    threading.Thread(target=_report, daemon=True).start()
    return candidate.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
