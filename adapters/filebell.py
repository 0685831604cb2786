"""Cross-process wake-ups on one host through files: ``ring`` touches a bell file,
and a :class:`Listener` waits for that with Linux inotify (no polling). Where inotify
is unavailable listeners degrade to sleeping in short slices, which callers tolerate.

Closing an inotify descriptor waits for a kernel RCU grace period (often 10-20 ms),
so a :class:`BellBoard` keeps one descriptor per thread for its whole life and only
adds watches; a wake-up for another bell of the same thread is a harmless spurious one.
Each thread also has an eventfd through which :meth:`Listener.interrupt` (a cancel or
a client's close) wakes its wait, so the core need not wake up to check for those.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from pathlib import Path

from tenure.errors import TenureError
from tenure.readiness import wait_readable
from tenure.store import Signal

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE
"""A ring writes the bell (never just its times: see :meth:`BellBoard.listen`)."""
FALLBACK_SLICE = 0.05
CLOSE_GRACE = 5.0
CLOSED = "this store was closed (its client is closed); connect() a new client"


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
    # os-level calls: a Python file object costs ~3x as much, on every handover.
    bell = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        os.write(bell, b".")
        if os.lseek(bell, 0, os.SEEK_CUR) > 4096:
            os.ftruncate(bell, 0)
    finally:
        os.close(bell)


def _watch(fd: int, path: Path) -> bool:
    """Adds (or keeps) a watch on ``path`` to the inotify descriptor ``fd`` and drops
    the events already queued (the caller reads the state next); False if it cannot."""
    assert _LIBC is not None
    name = os.fsencode(path)
    if _LIBC.inotify_add_watch(fd, name, _MASK) < 0:
        if ctypes.get_errno() != errno.ENOENT:
            return False
        # Created only when missing: touching an existing bell changes its times, an
        # IN_ATTRIB event that woke every other listener, each of which then touched
        # it again (a wake-up storm: ~25% of a core per idle waiter).
        path.touch(exist_ok=True)
        if _LIBC.inotify_add_watch(fd, name, _MASK) < 0:
            return False
    _drain(fd)
    return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class BellBoard:
    """Per-thread inotify descriptors shared by every listener of one store.

    :meth:`close` may be called from any thread while others wait: it wakes every
    waiter (through a pipe each wait also selects on), waits for them to leave the
    descriptors, and only then closes them -- a descriptor closed under a waiter fails
    with EBADF, or worse, its number is reused by an unrelated file the waiter then
    reads. After close, :meth:`Listener.wait` returns True at once (the state may have
    changed: the caller steps the store again) and :meth:`listen` -- the first thing a
    store step does -- raises TenureError, so waiters end with that clear error."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._fds: list[int] = []
        self._busy = 0
        self._closed = False
        # Level-triggered and never drained: once written, every select sees it.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _fd(self) -> int:
        fd: int | None = getattr(self._local, "fd", None)
        if fd is None:
            fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC) if _LIBC is not None else -1
            self._local.fd = fd
            if fd >= 0:
                with self._lock:
                    self._fds.append(fd)
        return fd

    def _poke_fd(self) -> int:
        """This thread's interrupt descriptor (an eventfd): written by
        :meth:`Listener.interrupt` from any thread, selected on by this thread's waits."""
        poke: int | None = getattr(self._local, "poke", None)
        if poke is None:
            poke = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._local.poke = poke
            with self._lock:
                self._fds.append(poke)
        return poke

    def _interrupt(self, poke: int) -> None:
        # Under the lock: close() marks the board closed under it before closing any
        # descriptor, so this never writes to a closed (or reused) descriptor number.
        with self._lock:
            if not self._closed:
                os.eventfd_write(poke, 1)

    def _enter(self) -> bool:
        """Marks the calling thread as using the descriptors (close waits for it);
        False, and not marked, once the board is closed."""
        with self._lock:
            if self._closed:
                return False
            self._busy += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def listen(self, path: Path) -> Listener:
        """A listener on ``path``. Create it BEFORE reading the state you wait on, so a
        ring between the read and the wait is not missed."""
        if not self._enter():
            raise TenureError(CLOSED)
        try:
            fd = self._fd()
            if fd >= 0 and not _watch(fd, path):
                fd = -1
            poke = self._poke_fd()
        finally:
            self._leave()
        return Listener(self, fd, poke)

    def _wait(self, fd: int, poke: int, timeout: float) -> bool:
        if not self._enter():
            return True
        try:
            watched = [self._wake_r, poke] if fd < 0 else [fd, self._wake_r, poke]
            slice_ = timeout if fd >= 0 else min(timeout, FALLBACK_SLICE)
            ready, invalid = wait_readable(watched, slice_)
            if poke in ready:
                _drain(poke)
            if fd < 0 or invalid or self._wake_r in ready or poke in ready:
                return True
            if not ready:
                return False
            _drain(fd)
            return True
        finally:
            self._leave()

    def close(self) -> None:
        """Wakes every waiter, then closes every descriptor (slow: do it once, when the
        store closes). Idempotent; safe from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.write(self._wake_w, b"x")
            if not self._idle.wait_for(lambda: self._busy == 0, timeout=CLOSE_GRACE):
                # A woken waiter cannot block, so this is a bug elsewhere; leaking the
                # descriptors is safer than closing them under a thread that uses them.
                log.warning("inotify listeners still busy after %g s; descriptors left open",
                            CLOSE_GRACE)
                return
            fds, self._fds = self._fds, []
        for fd in [*fds, self._wake_r, self._wake_w]:
            os.close(fd)


class Listener(Signal):
    """Waits for rings of the bells its thread listens to (a :class:`Signal`);
    :meth:`interrupt` wakes it from any thread."""

    interruptible = True

    def __init__(self, board: BellBoard, fd: int, poke: int) -> None:
        self._board = board
        self._fd = fd
        self._poke = poke

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a ring; True if one came (or, without
        inotify, after a short slice, since a ring cannot be told from none); True at
        once when the board is closed or the listener interrupted, before or during
        the wait. An interrupt that comes after a wait ended makes the next wait of
        this thread return True once (a spurious wake-up)."""
        return self._board._wait(self._fd, self._poke, timeout)

    def interrupt(self) -> None:
        self._board._interrupt(self._poke)
