"""Cross-process wake-ups on one host through files: ``ring`` touches a bell file,
and a :class:`Listener` waits for that with Linux inotify (no polling). Where inotify
is unavailable listeners degrade to sleeping in short slices, which callers tolerate.

Closing an inotify descriptor waits for a kernel RCU grace period (often 10-20 ms),
so a :class:`BellBoard` keeps one descriptor per thread for its whole life and only
adds watches; a wake-up for another bell of the same thread is a harmless spurious one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import threading
import time
from pathlib import Path

from tenure.store import Signal

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE
FALLBACK_SLICE = 0.05


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1  # noqa: B018 - probe that the symbol exists
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def ring(path: Path) -> None:
    """Wakes every listener on ``path`` (creating the file if needed)."""
    with open(path, "ab") as bell:
        bell.write(b".")
    if path.stat().st_size > 4096:
        os.truncate(path, 0)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class BellBoard:
    """Per-thread inotify descriptors shared by every listener of one store."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._fds: list[int] = []

    def _fd(self) -> int:
        fd: int | None = getattr(self._local, "fd", None)
        if fd is None:
            fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC) if _LIBC is not None else -1
            self._local.fd = fd
            if fd >= 0:
                with self._lock:
                    self._fds.append(fd)
        return fd

    def listen(self, path: Path) -> Listener:
        """A listener on ``path``. Create it BEFORE reading the state you wait on, so a
        ring between the read and the wait is not missed."""
        path.touch(exist_ok=True)
        fd = self._fd()
        if fd >= 0:
            if _LIBC is None or _LIBC.inotify_add_watch(fd, str(path).encode(), _MASK) < 0:
                fd = -1
            else:
                _drain(fd)
        return Listener(fd)

    def close(self) -> None:
        """Closes every descriptor (slow: do it once, when the store closes)."""
        with self._lock:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


class Listener(Signal):
    """Waits for rings of the bells its thread listens to (a :class:`Signal`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a ring; True if one came (or, without
        inotify, after a short slice, since a ring cannot be told from none)."""
        if self._fd < 0:
            time.sleep(min(max(timeout, 0.0), FALLBACK_SLICE))
            return True
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if not ready:
            return False
        _drain(self._fd)
        return True
