"""Timestamps of every socket send and receive in a bench worker process.

:func:`install` wraps ``socket.socket``'s ``send``, ``sendall``, ``recv`` and
``recv_into`` for the whole process, so one recorder serves every tool alike: tenure's
hand-written HTTP lines, ``http.client`` (the Consul guide loop), kazoo's connection
thread, redis-py. Each call that moved bytes becomes one :class:`Tap` record:
``CLOCK_MONOTONIC`` before and after the call, the socket's file descriptor, the
calling thread's name, the byte count and the first :data:`HEAD` bytes.

What it promises: a send's ``start`` is before its first byte left this process and a
receive's ``end`` is after its bytes were in this process (the kernel's arrival is at
or before that). What it is not: a packet capture (no kernel timestamps), nor free --
each record costs the caller about 1-2 us, the same for every tool. It is installed only
when the worker is asked to (``--wire-trace``); ``tenure bench`` never does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

HEAD = 48
"""Bytes of each send/receive kept (enough for an HTTP request line or a ZooKeeper
header)."""


@dataclass(frozen=True)
class Tap:
    """One socket call that moved bytes."""

    op: str
    """``send`` or ``recv``."""
    start: float
    end: float
    fd: int
    thread: str
    size: int
    head: str
    """The first :data:`HEAD` bytes, latin-1 decoded (every byte kept, one char each)."""

    def data(self) -> bytes:
        """:attr:`head` as bytes again."""
        return self.head.encode("latin-1")


_taps: list[Tap] = []
_originals: dict[str, Any] = {}
CALLS = ("send", "sendall", "recv", "recv_into")


def install() -> None:
    """Wraps ``socket.socket``'s data calls until :func:`uninstall` (idempotent). Records
    accumulate until :func:`drain`."""
    if _originals:
        return
    cls = socket.socket
    _originals.update({name: getattr(cls, name) for name in CALLS})

    def record(op: str, start: float, sock: socket.socket, size: int, head: bytes) -> None:
        _taps.append(Tap(op, start, time.monotonic(), sock.fileno(),
                         threading.current_thread().name, size, head.decode("latin-1")))

    def sending(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: socket.socket, data: Any, *args: Any) -> Any:
            start = time.monotonic()
            result = original(self, data, *args)
            view = memoryview(data)
            record("send", start, self, view.nbytes, bytes(view[:HEAD]))
            return result
        return wrapped

    def recv(self: socket.socket, size: int, *args: Any) -> bytes:
        start = time.monotonic()
        data: bytes = original_recv(self, size, *args)
        if data:
            record("recv", start, self, len(data), data[:HEAD])
        return data

    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, *args: Any) -> int:
        start = time.monotonic()
        count: int = original_recv_into(self, buffer, nbytes, *args)
        if count:
            record("recv", start, self, count, bytes(memoryview(buffer)[:min(count, HEAD)]))
        return count

    original_recv, original_recv_into = cls.recv, cls.recv_into
    cls.send = sending(cls.send)  # type: ignore[method-assign]
    cls.sendall = sending(cls.sendall)  # type: ignore[method-assign]
    cls.recv = recv  # type: ignore[method-assign,assignment]
    cls.recv_into = recv_into  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """Puts ``socket.socket``'s own calls back and drops the records (idempotent)."""
    for name, original in _originals.items():
        setattr(socket.socket, name, original)
    _originals.clear()
    del _taps[:]


def drain() -> list[dict[str, Any]]:
    """The records since the last drain, oldest first, as plain dicts (JSON-ready)."""
    taken = _taps[:]
    del _taps[:len(taken)]
    return [asdict(tap) for tap in taken]
