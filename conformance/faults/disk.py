"""Disk faults under the embedded SQLite store: a small tmpfs that can be filled, and
remounted read-only.

    with SmallDisk(size_kib=1024) as disk:
        url = f"sqlite://{disk.path}/store.db"
        disk.fill()          # ENOSPC for every write from now on
        disk.free()
        disk.read_only()     # remount ro: only while no process holds a file open for write

The mount point is recorded in the fault state file (:mod:`.netns`) before mounting, so a
killed run's mount is unmounted by the sweep / ``scripts/check-orphans --kill``.

Limits (the kernel's, not ours): a filesystem cannot be remounted read-only while a
process has a file on it open for writing (EBUSY) -- a running SQLite leader keeps its
database open read-write, so "read-only under a running leader" cannot be made this way;
:meth:`read_only` raises :class:`~.netns.FaultUnavailable` saying so, and the tests make
the filesystem read-only between runs instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tenure.conformance.faults.netns import FaultUnavailable, forget_mount, record_mount


class SmallDisk:
    """A size-limited tmpfs mounted at a fresh temporary directory."""

    def __init__(self, size_kib: int = 1024) -> None:
        if os.geteuid() != 0:
            raise FaultUnavailable("mounting a tmpfs needs root (CI runs as root)")
        self.path = Path(tempfile.mkdtemp(prefix="tenure-disk-"))
        self.state = record_mount(None, self.path)
        self._filler = self.path / ".filler"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755",
                               "tmpfs", str(self.path)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            forget_mount(self.state, self.path)
            raise FaultUnavailable(f"mount tmpfs at {self.path} failed: {done.stderr.strip()}")
        self.mounted = True

    def fill(self) -> int:
        """Writes a filler file until the filesystem is full; returns bytes written."""
        written = 0
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):  # smaller pieces take the last blocks
                while True:
                    try:
                        written += os.write(fd, b"\0" * size)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Removes the filler file."""
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def _remount(self, mode: str) -> None:
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            busy = "busy" in done.stderr
            why = (" (a process has a file on it open for writing: the kernel refuses a "
                   "read-only remount under a running writer)") if busy else ""
            raise FaultUnavailable(f"remount {mode} of {self.path} failed: "
                                   f"{done.stderr.strip()}{why}")

    def read_only(self) -> None:
        """Remounts read-only (see the module docstring for when the kernel refuses)."""
        self._remount("ro")

    def writable(self) -> None:
        """Remounts read-write."""
        self._remount("rw")

    def close(self) -> None:
        """Unmounts (lazily: a killed candidate's descriptors do not keep it) and removes
        the directory. Idempotent."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
            forget_mount(self.state, self.path)
            self.mounted = False
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def __enter__(self) -> SmallDisk:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
