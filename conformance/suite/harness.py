"""Candidate processes under a test's control: spawn, wait for events, kill, pause.

    with CandidateGroup(backend, "e1", tmp_path) as group:
        a = group.spawn(ttl=1)
        a.wait_for("elected")
        a.pause(); ...; a.resume()
        report = group.check()          # S1/S2/S3 over the shared history

Every candidate is a real OS process (``python -m tenure.conformance.suite.candidate``)
that dies with the test process (parent-death signal). Waits are on the events the
process prints, never on sleeps.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tenure.childproc import signal_group
from tenure.conformance.suite import history
from tenure.conformance.suite.eventstream import EventProcess

DEFAULT_WAIT = 30.0


class CandidateProcess(EventProcess):
    """One candidate process and the events it has reported so far."""

    def wait_for(
        self, kind: str, timeout: float = DEFAULT_WAIT, after: int = 0, **match: Any
    ) -> dict[str, Any]:
        """Waits for the first event of ``kind`` (matching ``match``) at index >= ``after``."""
        def find() -> dict[str, Any] | None:
            for event in self.events[after:]:
                if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        def exited() -> bool:
            return any(e["kind"] == "eof" for e in self.events)

        with self._cond:
            self._cond.wait_for(lambda: find() is not None or exited(), timeout=timeout)
            event = find()
            gone = exited()
        if event is None:
            why = "the process exited" if gone else f"none within {timeout:g} s"
            raise AssertionError(
                f"{self.name}: no {kind!r} event {match or ''} ({why}); "
                f"events: {[e['kind'] for e in self.events][-20:]}; stderr: {self.stderr()[-2000:]}"
            )
        return event

    def has(self, kind: str, **match: Any) -> bool:
        """True if an event of ``kind`` matching ``match`` was reported."""
        with self._cond:
            return any(
                e["kind"] == kind and all(e.get(k) == v for k, v in match.items())
                for e in self.events
            )

    def kill(self) -> None:
        """SIGKILL (the process gets no chance to resign)."""
        signal_group(self.pid, signal.SIGKILL)
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process, its renewals and its watchdog freeze."""
        signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        signal_group(self.pid, signal.SIGCONT)

    def wait_exit(self, timeout: float = DEFAULT_WAIT) -> int:
        """Waits for the process to exit and returns its status."""
        return self.process.wait(timeout=timeout)


class CandidateGroup:
    """Candidates of one election sharing one history file and one fence."""

    def __init__(self, backend: str, election: str, workdir: Path) -> None:
        self.backend = backend
        self.election = election
        self.workdir = workdir
        stem = election.replace("/", "_")
        self.history_path = workdir / f"history-{stem}.jsonl"
        self.fence_path = workdir / f"fence-{stem}.db"
        self.members: list[CandidateProcess] = []

    def spawn(
        self, *, ttl: float | None = None, hold: float | None = None, rounds: int = 1,
        tick: float = 0.05, name: str | None = None, broken: str | None = None,
        backend: str | None = None,
    ) -> CandidateProcess:
        """Starts one candidate process (``backend`` overrides the group's URL, e.g. a
        migration stage: candidates of several stages share one history and fence)."""
        name = name or f"c{len(self.members) + 1}"
        command = [
            sys.executable, "-m", "tenure.conformance.suite.candidate",
            "--backend", backend or self.backend, "--election", self.election,
            "--history", str(self.history_path), "--fence", str(self.fence_path),
            "--rounds", str(rounds), "--tick", str(tick), "--id", f"{name}-{time.monotonic_ns()}",
        ]
        if ttl is not None:
            command += ["--ttl", str(ttl)]
        if hold is not None:
            command += ["--hold", str(hold)]
        if broken is not None:
            command += ["--broken", broken]
        member = CandidateProcess(command, name)
        self.members.append(member)
        return member

    def check(self, save: bool = True) -> history.Report:
        """Runs the checker over the history; saves a failing one for replay (unless
        ``save`` is False: tests that expect a violation)."""
        report = history.check(history.load(self.history_path))
        if save and not report.ok:
            saved = Path("artifacts") / "failing-histories"
            saved.mkdir(parents=True, exist_ok=True)
            target = saved / f"{self.election.replace('/', '_')}-{time.time_ns()}.jsonl"
            shutil.copy(self.history_path, target)
            report.violations.append(f"(history saved for replay: {target})")
        return report

    def close(self) -> None:
        """Kills every member still running."""
        for member in self.members:
            if member.process.poll() is None:
                member.resume()
                member.kill()

    def __enter__(self) -> CandidateGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
