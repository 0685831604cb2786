"""A child process that reports JSON events, one per stdout line.

The base of the conformance candidates (:mod:`.harness`) and the benchmark workers
(:mod:`tenure.conformance.benchmarks.workers`): it starts the process so that it dies with us
(parent-death signal), keeps every event in order, appends ``{"kind": "eof"}`` when the
process closes its stdout, and keeps the last lines of its stderr for error messages.
Waiting is done on the condition variable ``_cond``, never by sleeping.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

from tenure.childproc import spawn_guarded

STDERR_LINES_KEPT = 200


class EventProcess:
    """A guarded child process and the JSON events it has printed so far."""

    def __init__(self, command: list[str], name: str, *, stdin: bool = False) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stderr: list[bytes] = []
        self.process = spawn_guarded(
            command, stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.process.pid

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"kind": "eof", "t": time.monotonic()})
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            del self._stderr[:-STDERR_LINES_KEPT]

    def stderr(self, lines: int = STDERR_LINES_KEPT) -> str:
        """The last ``lines`` lines the process wrote to stderr."""
        return b"".join(self._stderr[-lines:]).decode(errors="replace")
