"""What the ``layout=native`` interop tests (tests/{etcd,zookeeper,consul}/test_*_native.py)
share: a native candidate process whose leadership is recorded into the shared history,
a tenure candidate in the test process recording the same way, and ``tenure leader``.

Both sides write the conformance history format (:mod:`tenure.conformance.suite.history`)
on this host's monotonic clock, so one checker run judges the intervals of both kinds:

* a tenure leadership runs from its ``elected`` event to the earliest of its resign
  (``valid`` with the last deadline, then ``resign``, recorded before ``resign()``) and
  the latest deadline it recorded;
* a native leadership has no deadline (``deadline=inf``): it starts when the test reads
  the process's "I lead" output (the one point the native process exposes, a little
  after it really began) and ends when the test releases it (``resign``, recorded
  before the request is sent), SIGKILLs it (``lost``, recorded before the signal) or
  SIGSTOPs it (``lost``, recorded before the signal: the native recipes give a paused
  leader no deadline and no way to know it lost, so the checker could not judge the
  rest; the tests show the overlap it has once resumed instead of hiding it).

A native interval is thus inside the real one, so a real overlap shows as one. Nothing
here knows a store: each test file subclasses :class:`NativeProcess` for its tool.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tenure
from tenure.childproc import signal_group, spawn_guarded
from tenure.conformance.lab.cluster import wait_until
from tenure.conformance.suite import history

WAIT = 30.0


class LineProcess:
    """A guarded child (its own process group, dying with the test) whose stdout lines
    are kept in :attr:`lines` and handed to :meth:`on_line` in a reader thread under
    :attr:`cond`, which is notified after each line and at EOF (:attr:`eof`). Its
    stderr is kept for error messages, or merged into stdout (``merge_stderr``)."""

    def __init__(self, command: list[str], name: str, *, stdin: bool = False,
                 env: Mapping[str, str] | None = None, merge_stderr: bool = False) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.lines: list[str] = []
        self.eof = False
        self._stderr: list[bytes] = []
        self.process = spawn_guarded(
            command, env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader: threading.Thread | None = None
        if not merge_stderr:
            self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
            self._stderr_reader.start()

    def on_line(self, line: str, t: float) -> None:
        """Called with each stdout line (stripped) and the time it was read."""

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            t, line = time.monotonic(), raw.decode(errors="replace").strip()
            with self.cond:
                self.lines.append(line)
                self.on_line(line, t)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def wait(self, what: str, done: Callable[[], bool], timeout: float = WAIT) -> None:
        """Waits until ``done()`` (checked under :attr:`cond`) or EOF; fails naming
        ``what`` with the process's output when it does not happen in time."""
        with self.cond:
            self.cond.wait_for(lambda: done() or self.eof, timeout)
            ok = done()
        assert ok, (f"{self.name}: not {what} within {timeout:g} s (exited: {self.eof}); "
                    f"printed {self.lines[-20:]}; stderr: {self.stderr()[-2000:]}")

    def send(self, line: str) -> None:
        """Writes one line to the child's stdin (started with ``stdin=True``)."""
        assert self.process.stdin is not None, f"{self.name} has no stdin pipe"
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def signal(self, signum: int) -> None:
        signal_group(self.process.pid, signum)

    def wait_exit(self, timeout: float = WAIT) -> int:
        """Waits for the exit, and for its stderr to be read to the end."""
        status = self.process.wait(timeout=timeout)
        if self._stderr_reader is not None:
            self._stderr_reader.join(timeout)
        return status

    def stop(self) -> None:
        """Kills it if still running (resumed first, should it be paused)."""
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.process.wait()


class NativeProcess(LineProcess):
    """A native candidate process that records its leadership into the shared history
    (see the module docstring). A subclass calls :meth:`mark_elected` when its output
    says it leads, and sends its tool's release request in :meth:`send_release`."""

    def __init__(self, command: list[str], name: str, election: str, history_path: Path,
                 **options: Any) -> None:
        self.election, self.history_path = election, history_path
        self.token = 0
        self.elected_at = math.nan
        super().__init__(command, name, **options)

    def record(self, kind: str, t: float, **fields: Any) -> None:
        history.record(self.history_path, kind=kind, cid=self.name, election=self.election,
                       token=self.token, t=t, **fields)

    def mark_elected(self, token: int, t: float) -> None:
        """Records ``elected`` (no deadline); call under :attr:`cond` (from on_line)."""
        self.token, self.elected_at = token, t
        self.record("elected", t, deadline=math.inf)

    @property
    def leading(self) -> bool:
        with self.cond:
            return self.token > 0

    def wait_elected(self, timeout: float = WAIT) -> float:
        """Waits until its output said it leads; returns when that was read."""
        self.wait("elected", lambda: self.token > 0, timeout)
        return self.elected_at

    def send_release(self) -> None:
        raise NotImplementedError

    def release(self) -> float:
        """Records ``resign``, then asks the process to give leadership up; returns
        when the request was sent (the subclass waits for what confirms it)."""
        sent = time.monotonic()
        self.record("resign", sent)
        self.send_release()
        return sent

    def kill(self) -> float:
        """SIGKILL to the process group, recorded (before the signal) if it leads."""
        sent = time.monotonic()
        if self.leading:
            self.record("lost", sent, reason="SIGKILL")
        self.signal(signal.SIGKILL)
        self.process.wait()
        return sent

    def pause(self) -> float:
        """SIGSTOP; a leader's interval is cut here (see the module docstring)."""
        sent = time.monotonic()
        if self.leading:
            self.record("lost", sent, reason="SIGSTOP: no deadline, the interval is cut here")
        self.signal(signal.SIGSTOP)
        return sent

    def resume(self) -> float:
        """SIGCONT; returns when it was sent."""
        sent = time.monotonic()
        self.signal(signal.SIGCONT)
        return sent


class TenureCandidate:
    """A tenure candidate in this process, recording like the conformance candidate:
    ``elected`` with its deadline, and on :meth:`resign` the last valid deadline then
    ``resign``. It campaigns on a thread so that the test can act meanwhile."""

    def __init__(self, url: str, election: str, history_path: Path, name: str, *,
                 ttl: float, campaign_timeout: float = 2 * WAIT) -> None:
        self.client = tenure.connect(url, ttl=ttl, candidate_id=name)
        self.election, self.history_path, self.name = election, history_path, name
        self.campaign_timeout = campaign_timeout
        self.lead: tenure.Leadership | None = None
        self.elected_at = math.nan
        self._won = threading.Event()
        self._error: BaseException | None = None

    def _record(self, kind: str, t: float, **fields: Any) -> None:
        assert self.lead is not None
        history.record(self.history_path, kind=kind, cid=self.name, election=self.election,
                       token=self.lead.token, t=t, **fields)

    def _campaign(self) -> None:
        try:
            lead = self.client.election(self.election).campaign(
                value=self.name.encode(), timeout=self.campaign_timeout)
        except BaseException as exc:  # reported by wait_elected
            self._error = exc
        else:
            self.lead, self.elected_at = lead, time.monotonic()
            self._record("elected", self.elected_at, deadline=lead.deadline)
        self._won.set()

    def campaign_in_background(self, reader: tenure.Client | None = None) -> None:
        """Campaigns (again) on a thread; with ``reader``, returns once it is queued
        (the reader lists one more contender) or elected."""
        self.lead, self._error = None, None
        self._won.clear()
        before = len(reader.election(self.election).contenders()) if reader else 0
        threading.Thread(target=self._campaign, daemon=True).start()
        if reader is not None:
            wait_until(lambda: len(reader.election(self.election).contenders()) > before
                       or self._won.is_set(), WAIT, f"{self.name} queued")

    def wait_elected(self, timeout: float = WAIT) -> float:
        assert self._won.wait(timeout), f"{self.name} was not elected within {timeout:g} s"
        assert self._error is None, f"{self.name}: {self._error!r}"
        return self.elected_at

    @property
    def token(self) -> int:
        assert self.lead is not None, f"{self.name} has not been elected"
        return self.lead.token

    @property
    def leading(self) -> bool:
        return self._won.is_set() and self.lead is not None

    def resign(self) -> float:
        """Records the last valid deadline and ``resign``, then resigns; returns when
        the resign began."""
        assert self.lead is not None
        self.lead.ensure()
        self._record("valid", time.monotonic(), deadline=self.lead.deadline)
        sent = time.monotonic()
        self._record("resign", sent)
        self.lead.resign()
        return sent

    release = resign  # the name the native candidates' protocol uses


def run_tenure_leader(url: str, election: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``tenure leader --backend URL --election NAME [extra]``, captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "tenure", "leader", "--backend", url, "--election", election,
         *extra], capture_output=True, text=True, timeout=60)


def contenders_count(reader: tenure.Client, election: str) -> int:
    return len(reader.election(election).contenders())


def wait_queued(reader: tenure.Client, election: str, count: int) -> None:
    """Waits until ``count`` candidates have entries (native tools say nothing when
    they enqueue)."""
    wait_until(lambda: contenders_count(reader, election) == count, WAIT,
               f"{count} candidates queued in {election}")
