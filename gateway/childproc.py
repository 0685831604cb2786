"""Child processes that cannot outlive the process that started them, and the handle
``tenure run`` keeps on its deadline keeper (:mod:`tenure.deadline_keeper`).

    keeper = DeadlineKeeper.start(lead.deadline, grace=5.0)
    child = keeper.spawn(["./job.sh"], env=env)   # stopped at the deadline by the keeper
    keeper.extend(lead.deadline)                  # after each successful renewal
    ...
    keeper.close()                                # the child has exited: the keeper too

Both the keeper and the child carry a parent-death signal bound to the THREAD that
spawned them (Linux ``PR_SET_PDEATHSIG``): spawn them from a thread that lives as long
as they should, such as the main thread. Neither is started by forking the calling
process (see :func:`spawn_guarded`), so a process running gRPC threads can start them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tenure import deadline_keeper, guard_exec
from tenure.readiness import readable

KEEPER_START_TIMEOUT = 10.0
"""Seconds :meth:`DeadlineKeeper.start` waits for the keeper's ``ready``."""

KEEPER_EXIT_SLACK = 5.0
"""Seconds, beyond the grace period, that :meth:`DeadlineKeeper.close` waits for the
keeper to exit before killing it."""


def spawn_guarded(
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    death_signal: int = signal.SIGKILL,
    announce_fd: int | None = None,
    **kwargs: object,
) -> subprocess.Popen[bytes]:
    """Starts ``command`` in a new process group (and session), with the kernel set to
    send it ``death_signal`` (SIGKILL) when the thread that spawned it dies (Linux
    parent-death signal; spawn from a thread that lives as long as the child should,
    e.g. the main thread). A parent that died before the signal was armed is caught
    too: the child then kills itself before exec.

    ``announce_fd``: a file descriptor (of a pipe) on which the child writes
    ``child PID`` before it executes ``command`` -- how a deadline keeper learns the
    process group before the command runs. Other keyword arguments go to Popen
    (except ``preexec_fn``, ``pass_fds`` and ``start_new_session``, which are taken).

    It never forks the calling process: the child is started with ``vfork()`` +
    ``exec`` of :mod:`tenure.guard_exec`, which does the steps above and then
    ``exec``s ``command`` in its place (same pid). A ``fork()`` of a process running
    gRPC threads (the etcd backend) aborts the child; see that module. Returns once
    ``command`` is executing; raises the ``OSError`` Popen would (FileNotFoundError,
    PermissionError) if it cannot be executed."""
    status_r, status_w = os.pipe()
    fds = (status_w,) if announce_fd is None else (status_w, announce_fd)
    try:
        process = subprocess.Popen(  # type: ignore[call-overload]
            [sys.executable, "-I", "-S", guard_exec.__file__, str(int(death_signal)),
             str(os.getpid()), str(-1 if announce_fd is None else announce_fd),
             str(status_w), "--", *command],
            env=env, start_new_session=True, pass_fds=fds, **kwargs,
        )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    assert isinstance(process, subprocess.Popen)
    with os.fdopen(status_r, "rb") as status:
        failure = status.read()  # EOF: the exec succeeded (the pipe is close-on-exec)
    if failure:
        process.wait()
        number, _, reason = failure.decode("utf-8", "replace").partition(" ")
        raise OSError(int(number) if number.isdigit() else 0, reason, command[0])
    return process


def signal_group(pid: int, signum: int) -> None:
    """Sends ``signum`` to the process group led by ``pid``; ignores a vanished group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class KeeperError(OSError):
    """The deadline keeper could not be started."""


class DeadlineKeeper:
    """``tenure run``'s end of its deadline keeper process: start it, spawn the command
    through it, send it each new deadline, ask it to stop the command, close it.

    Promises: the keeper runs (it answered ``ready``) before :meth:`start` returns, and
    a command started with :meth:`spawn` is known to the keeper before it executes.
    Every method may be called from any thread; a keeper that has already exited makes
    :meth:`extend` and :meth:`stop` return False instead of raising. What it does not
    do: restart a keeper that died (the caller falls back to stopping the command
    itself, see :meth:`stop`)."""

    def __init__(self, process: subprocess.Popen[bytes], commands: int, reports: int,
                 grace: float) -> None:
        self.process = process
        self.grace = grace
        self._commands: int | None = commands
        self._reports: int | None = reports
        self._lock = threading.Lock()
        self._reports_lock = threading.Lock()
        self._buffer = b""
        self._said: list[str] = []
        self.started_in = 0.0
        """Seconds from spawning the keeper to its ``ready`` (its start time)."""

    @classmethod
    def start(cls, deadline: float, grace: float) -> DeadlineKeeper:
        """Starts a keeper holding ``deadline`` (a ``time.monotonic()`` time) that will
        allow the command ``grace`` seconds between SIGTERM and SIGKILL; waits until it
        listens. KeeperError if it cannot be started or does not answer in time."""
        commands_r, commands_w = os.pipe()
        reports_r, reports_w = os.pipe()
        began = time.monotonic()
        try:
            process = spawn_guarded(
                [sys.executable, "-I", "-S", deadline_keeper.__file__, repr(deadline),
                 repr(grace)],
                stdin=commands_r, stdout=reports_w, death_signal=signal.SIGTERM,
            )
        except OSError as exc:
            for fd in (commands_r, commands_w, reports_r, reports_w):
                os.close(fd)
            raise KeeperError(f"cannot start the deadline keeper: {exc}") from exc
        os.close(commands_r)
        os.close(reports_w)
        # Non-blocking: extensions are written from the renewing thread, which a keeper
        # that stopped reading (frozen) must never block; see _send.
        os.set_blocking(commands_w, False)
        keeper = cls(process, commands_w, reports_r, grace)
        if keeper._read_report(KEEPER_START_TIMEOUT) != "ready":
            keeper.kill()
            raise KeeperError(
                f"the deadline keeper did not start within {KEEPER_START_TIMEOUT:g} s "
                f"(exit status {process.poll()}); is {sys.executable} runnable?"
            )
        keeper.started_in = time.monotonic() - began
        return keeper

    def spawn(self, command: Sequence[str], env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        """Starts ``command`` (see :func:`spawn_guarded`) under this keeper's guard;
        ValueError once :meth:`close` was called."""
        with self._lock:
            fd = self._commands
        if fd is None:
            raise ValueError("this deadline keeper is closed; start a new one")
        return spawn_guarded(command, env, announce_fd=fd, **kwargs)

    def extend(self, deadline: float, known_at: float | None = None) -> bool:
        """Sends a new deadline (``time.monotonic()``), learnt at ``known_at`` (the
        renewal's success; default: now); the keeper takes it if ``known_at`` is before
        the deadline it holds, however late it reads it. False if the keeper is gone."""
        at = time.monotonic() if known_at is None else known_at
        return self._send(f"deadline {deadline!r} {at!r}", droppable=True)

    def stop(self) -> bool:
        """Asks the keeper to stop the command now (SIGTERM, SIGKILL after the grace
        period). False if the keeper is gone: then stop the command yourself."""
        return self._send("stop")

    def close(self) -> list[str]:
        """Tells the keeper the command has exited (call it before reaping the command,
        so its pid cannot be reused meanwhile), waits for the keeper to exit and
        returns every line it reported (``ready``, ``stopping deadline``, ...)."""
        self._send("bye")
        with self._lock:
            fd, self._commands = self._commands, None
        if fd is not None:
            os.close(fd)
        try:
            self.process.wait(timeout=self.grace + KEEPER_EXIT_SLACK)
        except subprocess.TimeoutExpired:
            self.kill()
        said = self.reports
        with self._reports_lock:
            fd, self._reports = self._reports, None
        if fd is not None:
            os.close(fd)
        return said

    @property
    def reports(self) -> list[str]:
        """The lines the keeper has reported so far (read without blocking)."""
        while self._read_report(0) is not None:
            pass
        with self._reports_lock:
            return list(self._said)

    def fired(self) -> str | None:
        """The reason the keeper stopped the command on its own (``deadline``,
        ``orphaned``), or None."""
        for line in self.reports:
            verb, _, why = line.partition(" ")
            if verb == "stopping" and why != "requested":
                return why
        return None

    def kill(self) -> None:
        """Kills the keeper process (not the command) and reaps it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def _send(self, line: str, droppable: bool = False) -> bool:
        """Writes one line (shorter than PIPE_BUF: written whole or not at all). A
        keeper whose pipe is full has not read for thousands of lines (it is frozen):
        an extension (``droppable``) is then dropped -- a later one replaces it -- and
        any other line reports the keeper gone, so the caller acts itself."""
        with self._lock:
            if self._commands is None:
                return False
            try:
                os.write(self._commands, line.encode() + b"\n")
            except BlockingIOError:
                return droppable
            except BrokenPipeError:
                return False
            return True

    def _read_report(self, timeout: float) -> str | None:
        """The next line the keeper reported, waiting up to ``timeout`` seconds; None
        if there is none (yet) or the keeper closed its end."""
        end = time.monotonic() + timeout
        with self._reports_lock:
            while b"\n" not in self._buffer:
                if self._reports is None:
                    return None
                if not readable(self._reports, end - time.monotonic()):
                    return None
                data = os.read(self._reports, 4096)
                if not data:
                    return None
                self._buffer += data
            line, _, self._buffer = self._buffer.partition(b"\n")
            text = line.decode("ascii", "replace")
            self._said.append(text)
            return text
