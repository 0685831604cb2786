"""``tenure demo``: five candidate processes, a crash, a pause, and a fenced write.

Runs on the embedded SQLite store in a temporary directory (or on ``--backend``):
1. five candidates campaign; one leads and writes to a fenced resource;
2. the leader is SIGKILLed: the next candidate leads once the dead one's TTL passes;
3. that leader is SIGSTOPped past its TTL: a third one leads and writes;
4. the paused leader is resumed and, not yet knowing it lost, writes with its old
   token: the fencing check refuses it, and it steps down.
Ends by itself (about 20 s) and exits 0 only if all of that was observed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, PIPE, Popen

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from tenure.childproc import signal_group, spawn_guarded
from tenure.cli.common import election_name, ttl_seconds

CANDIDATES = 5
STEP_TIMEOUT = 30.0


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


@dataclass
class Candidate:
    """What the demo knows about one candidate process."""

    name: str
    process: Popen[bytes]
    state: str = "starting"
    token: int | None = None
    accepted: int = 0
    rejected: int = 0
    events: list[dict[str, object]] = field(default_factory=list)


class Demo:
    """Runs the candidates, injects the faults, and checks what happened."""

    def __init__(self, backend: str, election: str, ttl: float, workdir: Path) -> None:
        self.backend, self.election, self.ttl = backend, election, ttl
        self.fence = str(workdir / "fence.db")
        self.start = time.monotonic()
        self.lock = threading.Condition()
        self.log: list[str] = []
        self.accepted_tokens: list[int] = []
        self.candidates = [self._spawn(f"candidate-{i + 1}") for i in range(CANDIDATES)]

    def _spawn(self, name: str) -> Candidate:
        command = [sys.executable, "-m", "tenure.demo_worker",
                   self.backend, self.election, self.fence, name, str(self.ttl)]
        candidate = Candidate(name, spawn_guarded(command, stdout=PIPE, stderr=DEVNULL))
        threading.Thread(target=self._read, args=(candidate,), daemon=True).start()
        return candidate

    def _read(self, candidate: Candidate) -> None:
        assert candidate.process.stdout is not None
        for line in candidate.process.stdout:
            event = json.loads(line)
            with self.lock:
                self._apply(candidate, event)
                self.lock.notify_all()

    def _apply(self, candidate: Candidate, event: dict[str, object]) -> None:
        event["at"] = time.monotonic()
        candidate.events.append(event)
        kind = event["event"]
        token = event.get("token")
        if kind == "elected":
            candidate.state, candidate.token = "LEADER", int(str(token))
            self.say(f"{candidate.name} is elected with fencing token {token}")
        elif kind == "write":
            if event["accepted"]:
                candidate.accepted += 1
                self.accepted_tokens.append(int(str(token)))
            else:
                candidate.rejected += 1
                self.say(f"{candidate.name} wrote with stale token {token}: REJECTED by the fence")
        elif kind == "lost":
            candidate.state = "lost"
            self.say(f"{candidate.name} learns it lost leadership: {event['reason']}")
        elif kind == "stepped-down":
            candidate.state = "stepped down"
        elif kind == "waiting":
            candidate.state = "waiting"

    def say(self, message: str) -> None:
        """Adds a line to the event log (caller holds the lock or is the main thread)."""
        self.log.append(f"{time.monotonic() - self.start:6.2f}s  {message}")

    def leader(self) -> Candidate | None:
        """The candidate that most recently reported being elected and is still leading."""
        leaders = [c for c in self.candidates if c.state == "LEADER"]
        return max(leaders, key=lambda c: c.token or 0) if leaders else None

    def wait_for(self, what: str, predicate: Callable[[], bool]) -> None:
        """Waits until ``predicate`` holds; raises RuntimeError naming ``what`` if not."""
        with self.lock:
            if not self.lock.wait_for(predicate, timeout=STEP_TIMEOUT):
                raise RuntimeError(f"gave up waiting for {what} after {STEP_TIMEOUT:g} s")

    def view(self) -> Group:
        """The live table of candidates and the event log."""
        table = Table(title=f"tenure demo: election {self.election!r} on {self.backend}")
        for column in ("candidate", "pid", "state", "token", "writes ok", "writes rejected"):
            table.add_column(column)
        with self.lock:
            for c in self.candidates:
                style = "bold green" if c.state == "LEADER" else ""
                table.add_row(c.name, str(c.process.pid), c.state, str(c.token or "-"),
                              str(c.accepted), str(c.rejected), style=style)
            log = list(self.log[-12:])
        return Group(table, *log)

    def stop_all(self) -> None:
        """Kills every candidate process."""
        for c in self.candidates:
            signal_group(c.process.pid, signal.SIGCONT)
            signal_group(c.process.pid, signal.SIGKILL)
            c.process.wait()


def run(args: argparse.Namespace) -> int:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tenure-demo-") as tmp:
        backend = args.backend or f"sqlite://{tmp}/demo.db"
        demo = Demo(backend, args.election, args.ttl, Path(tmp))
        try:
            with Live(demo.view(), console=console, refresh_per_second=8,
                      get_renderable=demo.view):
                outcome = _script(demo)
        finally:
            demo.stop_all()
        console.print()
        console.print(outcome)
        return 0 if outcome.startswith("OK") else 1


def _script(demo: Demo) -> str:
    """The demo's story; returns a summary starting with OK, or a failure."""
    try:
        demo.wait_for("a first leader", lambda: demo.leader() is not None)
        first = demo.leader()
        assert first is not None
        demo.wait_for("a few writes", lambda: first.accepted >= 4)
        with demo.lock:
            demo.say(f"SIGKILL {first.name} (the leader); its session expires after the TTL")
            first.state = "killed"
        killed_at = time.monotonic()
        signal_group(first.process.pid, signal.SIGKILL)
        demo.wait_for("a second leader", lambda: demo.leader() not in (None, first))
        second = demo.leader()
        assert second is not None
        failover = second.events[-1]["at"]
        assert isinstance(failover, float)
        with demo.lock:
            demo.say(f"failover took {failover - killed_at:.2f} s (TTL {demo.ttl:g} s)")
        demo.wait_for("writes by the second leader", lambda: second.accepted >= 4)
        with demo.lock:
            demo.say(f"SIGSTOP {second.name}: paused past its TTL, it cannot renew")
            second.state = "paused"
        signal_group(second.process.pid, signal.SIGSTOP)
        demo.wait_for("a third leader", lambda: demo.leader() not in (None, first, second))
        third = demo.leader()
        assert third is not None
        demo.wait_for("a write by the third leader", lambda: third.accepted >= 1)
        with demo.lock:
            demo.say(f"SIGCONT {second.name}: it resumes mid-loop and writes without checking")
            second.state = "resumed"
        signal_group(second.process.pid, signal.SIGCONT)
        demo.wait_for("the stale write to be rejected", lambda: second.rejected >= 1)
        demo.wait_for("the stale leader to step down", lambda: second.state == "stepped down")
        time.sleep(1.0)  # let the viewer see the final state
    except RuntimeError as exc:
        return f"FAILED: {exc}"
    tokens = demo.accepted_tokens
    if tokens != sorted(tokens):
        return f"FAILED: the fence accepted tokens out of order: {tokens}"
    return (
        f"OK: {len(tokens)} fenced writes accepted, all in token order "
        f"({first.token} -> {second.token} -> {third.token}).\n"
        f"  - {first.name} was killed; {second.name} led after {failover - killed_at:.2f} s, "
        f"once the dead session's TTL ({demo.ttl:g} s) ran out.\n"
        f"  - {second.name} was paused past its TTL; {third.name} took over with a higher "
        "token.\n"
        f"  - On resuming, {second.name} wrote with its old token {second.token}: the fence "
        f"had seen {third.token}, so it refused the write, and {second.name} stepped down."
    )
