"""The parent side of :mod:`.worker`: spawn contender processes, send them commands and
wait for their events (no sleeps: every wait is on an event line or process exit)."""

from __future__ import annotations

import signal
import sys
import time
from types import TracebackType
from typing import Any

from tenure.childproc import signal_group
from tenure.conformance.suite.eventstream import EventProcess

DEFAULT_WAIT = 60.0


class WorkerFailed(RuntimeError):
    """A worker reported an error, exited, or did not report in time."""


class Worker(EventProcess):
    """One contender process; events are kept in order and consumed with a cursor."""

    def __init__(self, command: list[str], name: str) -> None:
        super().__init__(command, name, stdin=True)
        self._cursor = 0

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr."""
        return self.stderr(30)

    def send(self, command: str) -> None:
        """Writes one command line to the worker."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def next(self, kind: str, timeout: float = DEFAULT_WAIT) -> dict[str, Any]:
        """Consumes events up to and including the next one of ``kind``; raises
        WorkerFailed on an ``error`` event, on exit, or after ``timeout`` seconds."""
        def found() -> bool:
            return any(e["kind"] in (kind, "error", "eof") for e in self.events[self._cursor:])

        with self._cond:
            if not self._cond.wait_for(found, timeout=timeout):
                raise WorkerFailed(f"{self.name}: no {kind!r} within {timeout:g} s "
                                   f"(stderr: {self.stderr_tail()[-800:]})")
            while True:
                event = self.events[self._cursor]
                self._cursor += 1
                if event["kind"] == kind:
                    return event
                if event["kind"] == "error":
                    raise WorkerFailed(f"{self.name}: {event['error']}")
                if event["kind"] == "eof":
                    raise WorkerFailed(f"{self.name} exited before {kind!r}: "
                                       f"{self.stderr_tail()[-800:]}")

    def seen(self, kind: str) -> dict[str, Any] | None:
        """The first unconsumed event of ``kind`` already reported, if any."""
        with self._cond:
            for event in self.events[self._cursor:]:
                if event["kind"] == kind:
                    return event
        return None

    def kill(self) -> float:
        """SIGKILL; returns the monotonic time just before the signal."""
        t = time.monotonic()
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return t

    def pause(self) -> float:
        """SIGSTOP; returns the monotonic time just before the signal."""
        t = time.monotonic()
        signal_group(self.process.pid, signal.SIGSTOP)
        return t

    def resume(self) -> float:
        """SIGCONT; returns the monotonic time just before the signal."""
        t = time.monotonic()
        signal_group(self.process.pid, signal.SIGCONT)
        return t

    def close(self) -> None:
        """Kills the process if it still runs."""
        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGCONT)
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Workers:
    """Workers of one election of one tool; all killed on exit."""

    def __init__(self, tool: str, url: str, election: str, ttl: float,
                 wire_trace: bool = False) -> None:
        self.tool = tool
        self.wire_trace = wire_trace
        self.url = url
        self.election = election
        self.ttl = ttl
        self.members: list[Worker] = []

    def spawn(self, ready: bool = True) -> Worker:
        """Starts worker number ``len(members)`` (``{me}`` in the URL becomes its
        index) and, with ``ready``, waits until it is connected."""
        index = len(self.members)
        name = f"{self.tool}#{index}"
        command = [sys.executable, "-m", "tenure.conformance.benchmarks.worker",
                   "--tool", self.tool, "--url", self.url.replace("{me}", str(index)),
                   "--election", self.election, "--ttl", repr(self.ttl),
                   "--id", f"{name}-{time.monotonic_ns()}"]
        if self.wire_trace:
            command.append("--wire-trace")
        worker = Worker(command, name)
        self.members.append(worker)
        if ready:
            worker.next("ready")
        return worker

    def close(self) -> None:
        """Kills every worker still running."""
        for worker in self.members:
            worker.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
