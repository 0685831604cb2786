"""Child processes that cannot outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

_PR_SET_PDEATHSIG = 1
_libc_name = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None


def _set_parent_death_signal() -> None:
    # Runs in the forked child before exec: only a single foreign call, no imports.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn_guarded(
    command: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: object
) -> subprocess.Popen[bytes]:
    """Starts ``command`` in a new process group, with the kernel set to SIGKILL it when
    the thread that spawned it dies (Linux parent-death signal; spawn from a thread
    that lives as long as the child should, e.g. the main thread)."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        list(command), env=env, start_new_session=True,
        preexec_fn=_set_parent_death_signal, **kwargs,
    )


def signal_group(pid: int, signum: int) -> None:
    """Sends ``signum`` to the process group led by ``pid``; ignores a vanished group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
