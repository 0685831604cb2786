"""The first program of every process :func:`tenure.childproc.spawn_guarded` starts: it
arms the parent-death signal, announces its pid, and executes the real command in its
own place (same pid, same process group).

    python -I -S guard_exec.py SIGNAL PARENT ANNOUNCE_FD STATUS_FD -- COMMAND [ARGS...]

Why a program and not a ``preexec_fn``. Those steps must run in the child before the
command executes, and ``subprocess`` runs a ``preexec_fn`` only after a real
``fork()`` of the whole parent. ``tenure run`` is multi-threaded and, with the etcd
backend, full of gRPC threads: a ``fork()`` then runs gRPC's fork handlers, which
abort the child (``fork_posix.cc``: "Other threads are currently calling into gRPC,
skipping fork() handlers", then SIGABRT) and can break the parent's channels. Without
a ``preexec_fn``, ``subprocess`` starts this program with ``vfork()`` + ``exec`` (no
fork handlers, no copy of the parent), and this program, single-threaded, does the
steps and then ``exec``s the command.

Steps, in order: ``prctl(PR_SET_PDEATHSIG, SIGNAL)`` (kept across ``exec``); if the
parent is no longer PARENT (it died before the signal was armed) SIGKILL itself; write
``child PID`` on ANNOUNCE_FD (-1: none) and close it; restore SIGPIPE and SIGXFSZ
(which Python ignores, and an ignored signal stays ignored across ``exec``) to their
defaults; ``exec`` the command, searched on the ``PATH`` of its environment. If that
fails, the errno and the reason go to STATUS_FD (otherwise closed by the ``exec``) and
it exits 127, so the parent raises the same ``OSError`` ``subprocess.Popen`` would.
It imports only ``os``, ``sys``, ``_signal`` and ``ctypes`` (not ``ctypes.util``, whose
library search costs 30 ms): it adds about 25 ms to the start of the command.
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:  # the C module: ``signal`` would import enum, a third of the start time
    import _signal

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Runs the steps above; returns only when the command could not be executed."""
    try:
        death_signal, parent, announce_fd, status_fd = (int(a) for a in argv[1:5])
        if argv[5] != "--" or len(argv) < 7:
            raise ValueError
    except (IndexError, ValueError):
        os.write(2, b"usage: guard_exec.py SIGNAL PARENT ANNOUNCE_FD STATUS_FD -- COMMAND"
                    b" [ARGS...]; run by tenure.childproc, not by hand\n")
        return 2
    # CDLL(None): the symbols already loaded into this process, libc's among them.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), 9)
    if announce_fd >= 0:
        os.write(announce_fd, b"child %d\n" % os.getpid())
        os.close(announce_fd)
    os.set_inheritable(status_fd, False)
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(_signal, name):
            _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
    command = argv[6:]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(status_fd, f"{exc.errno or 0} {exc.strerror or exc}".encode())
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
