"""Waiting for file descriptors to become readable, for adapters that read a store's
socket themselves.

``select.select`` refuses descriptors numbered 1024 or more (FD_SETSIZE) with a
ValueError, and a process holding many stores' connections (hundreds of candidates in
one process, each with a connection per Redis instance) gets there. ``poll()`` has no
such limit and costs one system call, so these helpers use it.
"""

from __future__ import annotations

import math
import select
from collections.abc import Iterable

_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_LONGEST = (2**31 - 1) / 1000


def wait_readable(fds: Iterable[int], timeout: float) -> tuple[list[int], list[int]]:
    """Waits up to ``timeout`` seconds (0: not at all; ``math.inf``: no bound) for any of
    ``fds`` to be readable and returns ``(ready, invalid)``: the descriptors that can be
    read (a descriptor that hung up or failed counts as readable: the read reports it),
    and those that are not open (negative, or closed under the caller). Promises nothing
    about how many bytes a ready descriptor holds (on a TLS socket, possibly only
    records that carry no application data), and returns before ``timeout`` with
    nothing ready only when a descriptor is invalid -- a caller that loops must then
    stop waiting on it."""
    poller = select.poll()
    invalid: list[int] = []
    for fd in fds:
        if fd < 0:
            invalid.append(fd)
        else:
            poller.register(fd, select.POLLIN | select.POLLPRI)
    if invalid:
        timeout = 0.0
    # poll() counts whole milliseconds: round up, or a short wait would spin. It takes
    # at most 2**31 - 1 of them (~24.8 days); longer (or infinite) waits have no bound.
    millis = math.ceil(max(0.0, timeout) * 1000) if timeout < _LONGEST else None
    events = poller.poll(millis)
    ready: list[int] = []
    for fd, mask in events:
        if mask & select.POLLNVAL:
            invalid.append(fd)
        elif mask & _READABLE:
            ready.append(fd)
    return ready, invalid


def readable(fd: int, timeout: float) -> bool:
    """True once ``fd`` can be read within ``timeout`` seconds -- or is not open, since a
    read then fails at once and tells the caller more than a wait would."""
    ready, invalid = wait_readable([fd], timeout)
    return bool(ready or invalid)
