"""The deadline keeper: a tiny process that stops ``tenure run``'s command at the
validity deadline, whether or not ``tenure run`` itself is running.

    keeper = DeadlineKeeper.start(lead.deadline, grace=5.0)   # tenure.childproc
    child = keeper.spawn(command, env=env)    # the child tells the keeper its pid
    keeper.extend(lead.deadline)              # after every successful renewal

Why a process of its own. ``tenure run`` stops its command when its leadership's
validity deadline passes, from a watchdog thread -- which is frozen together with the
rest of ``tenure run`` by a SIGSTOP, a debugger, swapping or a stalled VM thread. The
command, a process of its own, keeps running meanwhile: a frozen wrapper once let its
child write for 3 s after the successor's first accepted write. The keeper holds only
the deadline and the command's process group, so its one job cannot be delayed by the
wrapper's store I/O, locks or garbage: it is started by ``tenure run`` before the
command, is told each new deadline over a pipe, and when the deadline passes without
an extension it sends the command's process group SIGTERM (and SIGCONT, so that a
stopped command sees it), then SIGKILL after the grace period. It also stops the
command when the pipe reaches end-of-file or SIGTERM arrives (its parent-death signal):
``tenure run`` is gone. It exits as soon as the command has exited, so it never
outlives it. It imports nothing but four small standard modules and ``_signal`` and is run as
``python -I -S`` on this file, so it starts in about 20 ms.

Protocol. Lines on the keeper's stdin, ASCII: ``child PID`` (written by the command's
own process just before it executes the command, see :mod:`tenure.guard_exec`, so the
keeper knows the group before the command runs, even if ``tenure run`` freezes right
after starting it), ``deadline SECONDS [KNOWN_AT]`` (``CLOCK_MONOTONIC`` times, what
``time.monotonic()`` returns in every process of this host: the new deadline, and when
tenure run learnt of it -- the renewal's success; default: on arrival), ``stop`` (stop
the command now: the leadership ended or tenure run was signalled), ``bye`` (the
command exited; exit without signalling). Lines on stdout: ``ready`` once it listens,
``stopping REASON`` (``deadline``, ``orphaned``, ``requested``) when it starts stopping
the command, ``exited`` when the command exited before that. ``tenure run`` waits for
``ready`` before it starts the command.

Clock reasoning. A deadline once passed is passed for good: extensions that tenure run
learnt of later are ignored, as the core ignores a renewal that succeeds after the
deadline. One it learnt of in time counts even when the keeper reads it late (the
keeper was still starting, or was not scheduled on a loaded machine): judging by the
time of reading made the keeper stop commands whose leadership never lapsed. The keeper
counts time with ``CLOCK_BOOTTIME`` where it exists: each deadline it receives is
converted once, on arrival, by the current offset between the two clocks. The offset
only grows (by time the host spent suspended), so the keeper never acts later than
``CLOCK_MONOTONIC`` would say and, unlike it, counts a suspension of the host.

What it does NOT do: act while it is frozen itself. When the WHOLE machine (or VM)
freezes, the wrapper, the keeper and the command stop together while the store's TTL
runs out and another candidate is elected; on resume the command may act before the
keeper has run, and a VM whose clocks stopped with it may not see the deadline as
passed at all. Fencing tokens (:mod:`tenure.fencing`) are then the only defence.
Processes that leave the command's process group are not stopped.
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module: ``signal`` would import enum, a third of the start time
    try:
        import _signal as signal
    except ImportError:  # pragma: no cover - CPython always has it
        import signal

KILL_WAIT = 5.0
"""Seconds the keeper waits for the command to exit after SIGKILL before it gives up
(a process in uninterruptible sleep exits only when its I/O returns)."""

POLL = 0.02
"""Seconds between checks that the command exited, where there is no pidfd (Linux
before 5.3)."""

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def now() -> float:
    """The keeper's clock: ``CLOCK_BOOTTIME`` where it exists, else ``CLOCK_MONOTONIC``."""
    if _BOOTTIME is None:
        return time.monotonic()
    return time.clock_gettime(_BOOTTIME)


def from_monotonic(deadline: float) -> float:
    """Converts a ``time.monotonic()`` time to the keeper's clock (see :func:`now`)."""
    return deadline + (now() - time.monotonic())


class Orphaned(Exception):
    """SIGTERM reached the keeper: its parent-death signal, or someone stopping it."""


def _orphaned(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # raised once at most
    raise Orphaned


class Keeper:
    """The keeper's state: the deadline (on :func:`now`'s clock), the command's
    process group once announced, and what it reports on ``reports`` (an fd)."""

    def __init__(self, deadline: float, grace: float, commands: int, reports: int) -> None:
        self.deadline = from_monotonic(deadline)
        self.grace = grace
        self.commands = commands
        self.reports = reports
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.buffer = b""
        self.eof = False

    def report(self, line: str) -> None:
        """Writes one line to ``tenure run``; a wrapper that is gone is not an error."""
        try:  # noqa: SIM105 - contextlib would cost start time
            os.write(self.reports, line.encode() + b"\n")
        except OSError:
            pass

    def say(self, text: str) -> None:
        """One line for the user, on the stderr shared with ``tenure run``."""
        try:  # noqa: SIM105
            os.write(2, f"tenure run: deadline keeper: {text}\n".encode())
        except OSError:
            pass

    def run(self) -> str:
        """Guards until the command exits or has been stopped; returns why it ended:
        ``exited``, ``bye``, or the reason it stopped the command."""
        try:
            return self._guard()
        except Orphaned:
            return self.stop("orphaned")

    def _guard(self) -> str:
        while True:
            remaining = self.deadline - now()
            watched = [self.commands] if self.pidfd is None else [self.commands, self.pidfd]
            ready, _, _ = select.select(watched, [], [], max(0.0, remaining))
            if self.pidfd is not None and self.pidfd in ready:
                self.report("exited")
                return "exited"
            if self.commands in ready:
                # Read before judging the deadline: an extension tenure run knew of in
                # time counts even if this keeper reads it late (see extend()).
                for verb, numbers in self.read_lines():
                    if verb == "child" and numbers:
                        self.adopt(int(numbers[0]))
                    elif verb == "deadline" and numbers:
                        self.extend(*numbers[:2])
                    elif verb == "stop":
                        return self.stop("requested")
                    elif verb == "bye":
                        return "bye"
                if self.eof:
                    return self.stop("orphaned")
            if now() >= self.deadline:
                return self.stop("deadline")

    def extend(self, deadline: float, known_at: float | None = None) -> None:
        """Moves the deadline to ``deadline`` if tenure run knew of it (``known_at``,
        both ``time.monotonic()`` times; default: now, on arrival) before the current
        deadline passed. A deadline once passed stays passed: an extension that became
        known only afterwards (a renewal that succeeded late) is ignored, as the core
        ignores it. An extension known in time but read late -- this keeper was
        starting, or not scheduled -- still counts: the leadership never lapsed."""
        known = now() if known_at is None else from_monotonic(known_at)
        if known < self.deadline:
            self.deadline = from_monotonic(deadline)

    def read_lines(self) -> list[tuple[str, list[float]]]:
        """Reads what is available (one read) and returns the complete lines as
        (verb, numbers) pairs; a line it cannot parse is skipped (never a crash: a
        keeper that died would leave the command unguarded)."""
        data = os.read(self.commands, 4096)
        if not data:
            self.eof = True
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        parsed = []
        for line in lines:
            verb, *arguments = line.decode("ascii", "replace").split() or [""]
            try:
                parsed.append((verb, [float(a) for a in arguments]))
            except ValueError:
                continue
        return parsed

    def adopt(self, pid: int) -> None:
        """Remembers the command's process group (its leader's pid) and opens a pidfd
        on the leader. The leader is ``tenure run``'s unreaped child, so the pid cannot
        have been reused yet (``tenure run`` reaps it only after sending ``bye``)."""
        self.pid = pid
        try:
            self.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.pidfd = None
        except (AttributeError, OSError):  # no pidfd here: poll instead (see POLL)
            self.pidfd = None

    def stop(self, why: str) -> str:
        """SIGTERM (+SIGCONT) to the command's group, SIGKILL after the grace period if
        its leader has not exited; waits for the announcement if none came yet."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.report(f"stopping {why}")
        while self.pid is None and not self.eof:
            for verb, numbers in self.read_lines():
                if verb == "child" and numbers:
                    self.adopt(int(numbers[0]))
                elif verb == "bye":
                    return why
        if self.pid is None:
            return why
        if why == "deadline":
            self.say("the validity deadline passed without a renewal from tenure run "
                     "(frozen or starved?); stopping the command")
        elif why == "orphaned":
            self.say("tenure run is gone; stopping the command")
        kill_group(self.pid, signal.SIGTERM)
        kill_group(self.pid, signal.SIGCONT)
        if not self.wait_exit(self.grace):
            kill_group(self.pid, signal.SIGKILL)
            self.wait_exit(KILL_WAIT)
        return why

    def wait_exit(self, timeout: float) -> bool:
        """True once the command's leader has exited (a zombie counts), within
        ``timeout`` seconds."""
        pid = self.pid
        assert pid is not None
        if self.pidfd is not None:
            ready, _, _ = select.select([self.pidfd], [], [], timeout)
            return bool(ready)
        end = now() + timeout
        while alive(pid):
            if now() >= end:
                return False
            time.sleep(POLL)
        return True


def kill_group(pid: int, signum: int) -> None:
    """Sends ``signum`` to the process group ``pid``; a vanished group is fine."""
    try:  # noqa: SIM105
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def main(argv: list[str]) -> int:
    """``deadline_keeper.py DEADLINE GRACE``: guards the command announced on stdin."""
    try:
        deadline, grace = float(argv[1]), float(argv[2])
    except (IndexError, ValueError):
        os.write(2, b"usage: deadline_keeper.py DEADLINE GRACE (seconds; DEADLINE is a "
                    b"CLOCK_MONOTONIC time); run by tenure run, not by hand\n")
        return 2
    signal.signal(signal.SIGTERM, _orphaned)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is tenure run's to handle
    keeper = Keeper(deadline, grace, commands=0, reports=1)
    keeper.report("ready")
    keeper.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
