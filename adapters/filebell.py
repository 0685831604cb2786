"""Cross-process wake-ups on one host through a file: ``ring`` touches it, ``Listener``
waits for that with Linux inotify (no polling). Where inotify is unavailable the
listener degrades to sleeping in short slices, which callers must tolerate."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import time
from pathlib import Path
from types import TracebackType

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
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


class Listener:
    """Watches one bell file. Create it BEFORE reading the state you wait on, so a ring
    between the read and the wait is not missed."""

    def __init__(self, path: Path) -> None:
        path.touch(exist_ok=True)
        self._fd = -1
        if _LIBC is not None:
            fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                mask = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE
                if _LIBC.inotify_add_watch(fd, str(path).encode(), mask) >= 0:
                    self._fd = fd
                else:
                    os.close(fd)

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a ring; True if one came (or, without
        inotify, after a short slice, since a ring cannot be told from none)."""
        if self._fd < 0:
            time.sleep(min(max(timeout, 0.0), FALLBACK_SLICE))
            return True
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if not ready:
            return False
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        """Releases the inotify descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
