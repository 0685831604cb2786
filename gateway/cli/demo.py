"""``tenure demo``: five candidate processes, a crash, a pause, and a fenced write.

Runs on the embedded SQLite store in a temporary directory (or on ``--backend``):
1. five candidates campaign; one leads and writes to a fenced resource;
2. the leader is SIGKILLed: the next candidate leads once the dead one's TTL passes;
3. that leader is SIGSTOPped past its TTL: a third one leads and writes;
4. the paused leader is resumed and, without checking whether it still leads, writes
   with its old token: the fencing check refuses it, and it steps down.
Ends by itself (about 10 s) and exits 0 only if all of that was observed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, PIPE, Popen
from typing import TypeVar

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tenure.childproc import signal_group, spawn_guarded
from tenure.cli.common import election_name, ttl_seconds
from tenure.config import parse_backend_url

CANDIDATES = 5
STEP_TIMEOUT = 30.0
"""Seconds each step of the story may take (generous: a step takes about one TTL)."""

EVENTS = frozenset({"waiting", "elected", "write", "lost", "stepped-down", "error"})
_TOKEN_EVENTS = frozenset({"elected", "write", "lost", "stepped-down"})

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="watch an election fail over and fence a stale leader",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend", metavar="URL", help="store URL (default: a temporary SQLite file)"
    )
    parser.add_argument("--ttl", type=ttl_seconds, default=2.0, help="session TTL (default 2)")
    parser.add_argument("--election", type=election_name, default="demo/primary")
    parser.set_defaults(handler=run)


def parse_event(line: bytes) -> dict[str, object]:
    """One report line of a candidate (see :mod:`tenure.demo_worker`) as an event dict.

    Raises ValueError saying what is wrong if the line is not exactly one JSON object
    with a known ``event`` and the fields that event needs."""
    try:
        event = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not one JSON object: {exc}") from None
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object but a {type(event).__name__}")
    kind = event.get("event")
    if kind not in EVENTS:
        raise ValueError(f"unknown event {kind!r}")
    token = event.get("token")
    if kind in _TOKEN_EVENTS and (not isinstance(token, int) or isinstance(token, bool)):
        raise ValueError(f"{kind!r} event without an integer token")
    if kind == "write" and not (
        isinstance(event.get("accepted"), bool) and isinstance(event.get("tried_at"), float)
    ):
        raise ValueError("'write' event without a boolean 'accepted' and a float 'tried_at'")
    return event


@dataclass
class Write:
    """One write a candidate reported."""

    token: int
    accepted: bool
    tried_at: float
    """``time.monotonic()`` in the candidate just before it wrote (one clock per host)."""
    seen_at: float
    """``time.monotonic()`` here when the report arrived (after the write was decided)."""


@dataclass
class Candidate:
    """What the demo knows about one candidate process."""

    name: str
    process: Popen[bytes]
    state: str = "starting"
    token: int | None = None
    elected_at: float | None = None
    accepted: int = 0
    rejected: int = 0
    lost_reason: str = ""
    """The reason of the candidate's ``lost`` event ("" if it reported none)."""
    final_state: str = ""
    """The leadership state the candidate reported when it stepped down."""
    final_reason: str = ""
    malformed: int = 0
    exited: bool = False
    events: list[dict[str, object]] = field(default_factory=list)
    reader: threading.Thread | None = None


@dataclass
class Outcome:
    """How one run of the demo ended."""

    ok: bool
    summary: str
    log: list[str]
    malformed: int


class Demo:
    """Runs the candidates, injects the faults, and checks what happened.

    All state below is guarded by :attr:`lock` (a Condition notified on every event)."""

    def __init__(self, backend: str, election: str, ttl: float, workdir: Path,
                 shown_backend: str | None = None, store_file: Path | None = None,
                 count: int = CANDIDATES) -> None:
        self.backend, self.election, self.ttl = backend, election, ttl
        self.shown_backend = shown_backend or backend
        self.fence = workdir / "fence.db"
        self.store_file = store_file
        self.start = time.monotonic()
        self.lock = threading.Condition()
        self.log: list[str] = []
        self.writes: list[Write] = []
        self.stopping = False
        self.candidates: list[Candidate] = []
        for i in range(count):
            self.follow(self._spawn(f"candidate-{i + 1}"))

    def _spawn(self, name: str) -> Candidate:
        command = [sys.executable, "-m", "tenure.demo_worker",
                   self.backend, self.election, str(self.fence), name, str(self.ttl)]
        return Candidate(name, spawn_guarded(command, stdout=PIPE, stderr=DEVNULL))

    def follow(self, candidate: Candidate) -> None:
        """Adds ``candidate`` and starts reading its reports in a thread of its own."""
        with self.lock:
            self.candidates.append(candidate)
        candidate.reader = threading.Thread(
            target=self._read, args=(candidate,), name=f"demo-read-{candidate.name}",
            daemon=True,
        )
        candidate.reader.start()

    def _read(self, candidate: Candidate) -> None:
        """Applies each report line of ``candidate``; a malformed line is logged and
        skipped, never the end of the candidate's reports."""
        stream = candidate.process.stdout
        assert stream is not None
        with stream:
            for line in stream:
                try:
                    event = parse_event(line)
                except ValueError as exc:
                    with self.lock:
                        candidate.malformed += 1
                        self.say(f"{candidate.name} sent a malformed report line ({exc}); "
                                 f"skipped it: {line[:120]!r}")
                        self.lock.notify_all()
                    continue
                with self.lock:
                    self._apply(candidate, event)
                    self.lock.notify_all()
        with self.lock:
            candidate.exited = True
            if not self.stopping and candidate.state not in ("killed", "stepped down"):
                self.say(f"{candidate.name} exited unexpectedly (state {candidate.state})")
                candidate.state = "exited"
            self.lock.notify_all()

    def _apply(self, candidate: Candidate, event: dict[str, object]) -> None:
        now = time.monotonic()
        event["at"] = now
        candidate.events.append(event)
        kind = event["event"]
        token = event.get("token")
        if kind == "elected":
            assert isinstance(token, int)
            candidate.state, candidate.token, candidate.elected_at = "LEADER", token, now
            self.say(f"{candidate.name} is elected with fencing token {token}")
        elif kind == "write":
            assert isinstance(token, int)
            accepted, tried_at = bool(event["accepted"]), float(str(event["tried_at"]))
            self.writes.append(Write(token, accepted, tried_at, now))
            if accepted:
                candidate.accepted += 1
            else:
                candidate.rejected += 1
                knows = ("its leadership is already lost" if event.get("state") == "lost"
                         else f"its leadership is {event.get('state')} by its own clock")
                self.say(f"{candidate.name} wrote with stale token {token}: REJECTED by the "
                         f"fence ({knows})")
        elif kind == "lost":
            candidate.state, candidate.lost_reason = "lost", str(event.get("reason"))
            self.say(f"{candidate.name} learns it lost leadership: {event.get('reason')}")
        elif kind == "stepped-down":
            candidate.state = "stepped down"
            candidate.final_state = str(event.get("state"))
            candidate.final_reason = str(event.get("reason"))
            if candidate.final_state == "lost":
                self.say(f"{candidate.name} stops writing and steps down (its leadership "
                         "was lost)")
            else:
                self.say(f"{candidate.name} resigns: the fence refused it while its own "
                         f"clock said {candidate.final_state}")
        elif kind == "waiting":
            candidate.state = "waiting"
        elif kind == "error":
            candidate.state = "failed"
            self.say(f"{candidate.name} failed: {event.get('message')}")

    def say(self, message: str) -> None:
        """Adds a line to the event log (the caller holds :attr:`lock`)."""
        self.log.append(f"{time.monotonic() - self.start:6.2f}s  {message}")

    def leader(self) -> Candidate | None:
        """The candidate that most recently reported being elected and is still leading
        (the caller holds :attr:`lock`)."""
        leaders = [c for c in self.candidates if c.state == "LEADER"]
        return max(leaders, key=lambda c: c.token or 0) if leaders else None

    def new_leader(self, *earlier: Candidate) -> Candidate | None:
        """The current leader if it is none of ``earlier`` (the caller holds :attr:`lock`)."""
        leader = self.leader()
        return None if leader is None or leader in earlier else leader

    def wait_for(self, what: str, found: Callable[[], T | None]) -> T:
        """Waits until ``found()`` (evaluated under :attr:`lock` on every event) returns
        something other than None or False, and returns it. Raises RuntimeError naming
        ``what`` after STEP_TIMEOUT seconds, or at once once every candidate has exited
        (nothing more can happen)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        with self.lock:
            while True:
                result = found()
                if result is not None and result is not False:
                    return result
                if all(c.exited for c in self.candidates):
                    raise RuntimeError(f"every candidate exited before {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"gave up waiting for {what} after {STEP_TIMEOUT:g} s")
                self.lock.wait(remaining)

    def pause(self, candidate: Candidate) -> None:
        """SIGSTOPs ``candidate`` at a moment it is inside no SQLite write transaction.

        A process stopped inside one would keep its write lock on the fence (or on the
        SQLite store) and block every other candidate until it resumes -- the demo would
        stall instead of failing over. So the demo takes those write locks itself
        (``BEGIN IMMEDIATE``), stops the candidate, waits until the kernel reports it
        stopped, and lets go: the candidate is then stopped outside its transactions, or
        waiting to begin one while holding nothing."""
        files = [self.fence] + ([self.store_file] if self.store_file is not None else [])
        with _write_locks(files):
            signal_group(candidate.process.pid, signal.SIGSTOP)
            _wait_stopped(candidate.process)

    def view(self) -> Group:
        """The live table of candidates and the event log."""
        table = Table(title=f"tenure demo: election {self.election!r} on {self.shown_backend}")
        for column in ("candidate", "pid", "state", "token", "writes ok", "writes rejected"):
            table.add_column(column)
        with self.lock:
            for c in self.candidates:
                style = "bold green" if c.state == "LEADER" else ""
                table.add_row(c.name, str(c.process.pid), c.state, str(c.token or "-"),
                              str(c.accepted), str(c.rejected), style=style)
            log = [Text(line) for line in self.log[-12:]]  # Text: no markup in reasons
        return Group(table, *log)

    def stop_all(self) -> None:
        """Kills every candidate process and waits for their reports to end."""
        with self.lock:
            self.stopping = True
        for c in self.candidates:
            signal_group(c.process.pid, signal.SIGCONT)
            signal_group(c.process.pid, signal.SIGKILL)
            c.process.wait()
        for c in self.candidates:
            if c.reader is not None:
                c.reader.join(timeout=STEP_TIMEOUT)


@contextlib.contextmanager
def _write_locks(files: list[Path]) -> Iterator[None]:
    """Holds the write lock of each SQLite file (``BEGIN IMMEDIATE``, rolled back at the
    end) while the body runs; RuntimeError if one cannot be had within STEP_TIMEOUT."""
    held: list[sqlite3.Connection] = []
    try:
        for path in files:
            db = sqlite3.connect(path, timeout=STEP_TIMEOUT, isolation_level=None)
            held.append(db)
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise RuntimeError(f"could not lock {path} to pause a candidate: {exc}") from None
        yield
    finally:
        for db in held:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()


def _wait_stopped(process: Popen[bytes]) -> None:
    """Blocks until the kernel reports ``process`` stopped (``waitpid(WUNTRACED)``);
    RuntimeError if it ended instead (its exit status is recorded on ``process``)."""
    while True:
        try:
            _, status = os.waitpid(process.pid, os.WUNTRACED)
        except ChildProcessError:
            raise RuntimeError(f"candidate process {process.pid} ended before it was "
                               "paused") from None
        if os.WIFSTOPPED(status):
            return
        process.returncode = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"candidate process {process.pid} ended (status "
                           f"{process.returncode}) before it was paused")


def run(args: argparse.Namespace) -> int:
    console = Console()
    outcome = run_demo(args.backend, args.election, args.ttl, console)
    return 0 if outcome.ok else 1


def run_demo(backend: str | None, election: str, ttl: float, console: Console) -> Outcome:
    """Runs the whole story once, showing it on ``console``, and returns how it ended.

    Raises ConfigError for a bad ``backend`` URL before starting anything."""
    url, _ = parse_backend_url(backend) if backend else (None, {})
    with tempfile.TemporaryDirectory(prefix="tenure-demo-") as tmp:
        store_file: Path | None = Path(tmp) / "demo.db"
        if url is not None:
            store_file = Path(url.path).expanduser() if url.scheme == "sqlite" else None
        assert backend or store_file is not None
        demo = Demo(backend or f"sqlite://{store_file}", election, ttl, Path(tmp),
                    shown_backend=url.redacted if url is not None else None,
                    store_file=store_file)
        try:
            with Live(demo.view(), console=console, refresh_per_second=8,
                      get_renderable=demo.view):
                ok, summary = _script(demo)
                if ok and console.is_terminal:
                    time.sleep(1.0)  # a pause for the viewer to see the final state
        finally:
            demo.stop_all()
        console.print()
        console.print(Text(summary))
        with demo.lock:
            malformed = sum(c.malformed for c in demo.candidates)
            return Outcome(ok, summary, list(demo.log), malformed)


def _script(demo: Demo) -> tuple[bool, str]:
    """The demo's story; returns (True, a summary) or (False, what went wrong)."""
    try:
        first = demo.wait_for("a first leader", demo.leader)
        demo.wait_for("a few writes", lambda: first.accepted >= 4)
        with demo.lock:
            demo.say(f"SIGKILL {first.name} (the leader); its session expires after the TTL")
            first.state = "killed"
        killed_at = time.monotonic()
        signal_group(first.process.pid, signal.SIGKILL)
        second = demo.wait_for("a second leader", lambda: demo.new_leader(first))
        assert second.elected_at is not None
        failover = second.elected_at - killed_at
        with demo.lock:
            demo.say(f"failover took {failover:.2f} s (TTL {demo.ttl:g} s)")
        demo.wait_for("writes by the second leader", lambda: second.accepted >= 4)
        with demo.lock:
            demo.say(f"SIGSTOP {second.name}: paused past its TTL, it cannot renew")
            second.state = "paused"
        demo.pause(second)
        third = demo.wait_for("a third leader", lambda: demo.new_leader(first, second))
        demo.wait_for("a write by the third leader", lambda: third.accepted >= 1)
        with demo.lock:
            demo.say(f"SIGCONT {second.name}: it resumes mid-loop and writes without checking")
            second.state = "resumed"
        signal_group(second.process.pid, signal.SIGCONT)
        demo.wait_for("the stale write to be rejected", lambda: second.rejected >= 1)
        demo.wait_for("the stale leader to step down", lambda: second.state == "stepped down")
    except RuntimeError as exc:
        return False, f"FAILED: {exc}"
    with demo.lock:
        writes = list(demo.writes)
        final_state, final_reason = second.final_state, second.final_reason
        lost_reason = second.lost_reason
    if final_state != "lost":
        return False, (
            f"FAILED: {second.name} was paused past its TTL, so its leadership must be lost, "
            f"but it stepped down with its leadership {final_state} ({final_reason})"
        )
    if not lost_reason:
        return False, f"FAILED: {second.name} lost its leadership but on_lost never told it"
    broken = _fence_violation(writes)
    if broken:
        return False, f"FAILED: {broken}"
    accepted = sum(w.accepted for w in writes)
    return True, (
        f"OK: {accepted} fenced writes accepted, none with a token lower than one accepted "
        f"before it ({first.token} -> {second.token} -> {third.token}).\n"
        f"  - {first.name} was killed; {second.name} led after {failover:.2f} s, "
        f"once the dead session's TTL ({demo.ttl:g} s) ran out.\n"
        f"  - {second.name} was paused past its TTL; {third.name} took over with a higher "
        "token.\n"
        f"  - On resuming, {second.name} wrote with its old token {second.token}: the fence "
        f"had seen {third.token}, so it refused the write, and {second.name} stepped down "
        f"(its leadership was lost: {final_reason})."
    )


def _fence_violation(writes: list[Write]) -> str:
    """What the fence did wrong, or "": a write must never be accepted with a token lower
    than one whose acceptance had already been reported when the write was tried. (Report
    order alone proves nothing: a candidate stopped between writing and reporting
    reports late.)"""
    accepted = [w for w in writes if w.accepted]
    for late in accepted:
        for earlier in accepted:
            if earlier.token > late.token and earlier.seen_at < late.tried_at:
                return (f"the fence accepted token {late.token} although token "
                        f"{earlier.token} had been accepted before that write was tried")
    return ""
