"""Store server processes that never outlive the process that started them.

Promise: every process started through :func:`spawn` is, from the moment it runs,

* the leader of its own process group (so a signal reaches its children too),
* killed by the kernel (``PR_SET_PDEATHSIG`` = SIGKILL) when its creating thread dies.
  The kernel ties that signal to the *thread* that spawned it, so every spawn happens on
  one long-lived daemon thread of this module (through
  :func:`tenure.childproc.spawn_guarded`: vfork + exec, never a fork of this process):
  the signal then fires when this Python process dies, however it dies (SIGKILL
  included), and not when a short-lived worker thread that asked for the spawn ends;
* killed by an ``atexit`` hook on a normal interpreter exit (Ctrl-C included, which
  exits through ``KeyboardInterrupt``).

Limits: a process that itself calls ``setsid`` and forks grandchildren outside its group
escapes the group kill (none of the stores we start does). Output goes to a log file, which
is kept after the process ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from tenure.childproc import spawn_guarded


class _Spawner:
    """One daemon thread that performs every spawn, so PDEATHSIG follows the process."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="tenure-lab-spawner", daemon=True
                )
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:
                done.set_exception(exc)


_spawner = _Spawner()
_live: set[StoreProcess] = set()
_live_lock = threading.Lock()


class StoreProcess:
    """A running server process with its own process group and a log file.

    ``kill``/``pause``/``resume``/``terminate`` signal the whole group. ``wait`` and
    ``alive`` report on the main process.
    """

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Sends ``sig`` to the process group; a group already gone is not an error."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL to the group, then reaps the process. Idempotent."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        _forget(self)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL if still alive after
        ``timeout`` seconds. Idempotent."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> StoreProcess:
    """Starts ``argv`` with stdout and stderr appended to ``log_path``.

    Raises ``FileNotFoundError`` naming the binary when it does not exist.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)

    def job() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            # Never a fork() of this process: a test process may run gRPC threads (the
            # etcd client), and a forked child of those can abort before exec.
            return spawn_guarded(
                list(argv),
                full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )

    proc = StoreProcess(name, _spawner.run(job), log_path)
    with _live_lock:
        _live.add(proc)
    return proc


def _forget(proc: StoreProcess) -> None:
    with _live_lock:
        _live.discard(proc)


def live_processes() -> list[StoreProcess]:
    """Processes started by this Python process and not yet killed."""
    with _live_lock:
        return [p for p in _live if p.alive()]


@atexit.register
def kill_all() -> None:
    """Kills every process still running that :func:`spawn` started."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        proc.kill()
