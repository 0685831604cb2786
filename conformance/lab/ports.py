"""Ports for lab servers on 127.0.0.1, drawn where no other socket takes them first.

A port is chosen some time before its server binds it -- at once for a client port,
seconds later for a peer behind a proxy, minutes later for a ZooKeeper quorum port
(bound only while that server leads) or after a restart. A port in the kernel's
ephemeral range (``net.ipv4.ip_local_port_range``) may meanwhile be taken by the
kernel for something else: the source port of any outgoing connection (the peers',
a client's, a probe's) or a listener bound to port 0 (every :class:`Proxy`). The
server then fails with ``Address already in use`` (CI runs saw an etcd member whose
client port a peer proxy had taken, and a ZooKeeper leader that could not bind its
quorum port for minutes). So :func:`free_port` draws, at random, from below that
range, where the kernel never picks ports by itself.

What this does not promise: that a lab of ANOTHER process on the host does not draw
the same port (the draws are random, so it is unlikely; the server's bind error then
names the port in its log).
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

HOST = "127.0.0.1"

LOWEST = 20000
"""The lowest port :func:`free_port` draws (above the ports services usually take)."""

_given: set[int] = set()
_lock = threading.Lock()
_draw = random.SystemRandom()  # not the seedable global one: processes must differ


class NoFreePort(RuntimeError):
    """No port could be found (the message says where it looked)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ephemeral (automatic) ports; Linux's default if it cannot
    be read."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, that this process has not
    handed out before, and -- unless the host's ephemeral range starts below 21000 --
    below that range (see the module docstring)."""
    high = ephemeral_range()[0] - 1
    if high - LOWEST < 1000:
        return _kernel_port()
    for _ in range(200):
        port = _draw.randint(LOWEST, high)
        if _bound(port) and _claim(port):
            return port
    raise NoFreePort(f"no free TCP port found on {HOST} between {LOWEST} and {high}")


def _kernel_port() -> int:
    """A port the kernel picks (a host whose ephemeral range leaves no room below)."""
    for _ in range(100):
        port = _bound(0)
        if port and _claim(port):
            return port
    raise NoFreePort(f"no free TCP port found on {HOST}")


def _bound(port: int) -> int:
    """The port a socket bound to ``port`` on :data:`HOST` got (0: it was taken)."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return 0
        got: int = sock.getsockname()[1]
        return got


def _claim(port: int) -> bool:
    """Marks ``port`` handed out; False if this process already had."""
    with _lock:
        if port in _given:
            return False
        _given.add(port)
        return True
