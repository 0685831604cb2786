"""tenure.readiness.wait_readable: descriptors above FD_SETSIZE (1024) work, a closed
descriptor is reported invalid instead of raising, hung-up sockets count as readable."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator

import pytest

from tenure.readiness import wait_readable

pytestmark = [pytest.mark.unit]


@pytest.fixture
def high_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A socket pair whose first end sits at descriptor 1100 or above."""
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 1100 + os.getpid() % 100)
    a.close()
    moved = socket.socket(fileno=high)
    try:
        yield moved, b
    finally:
        moved.close()
        b.close()


def test_a_descriptor_above_1024_is_waited_on(
    high_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = high_pair
    assert wait_readable([sock.fileno()], 0.0) == ([], [])
    peer.send(b"x")
    assert wait_readable([sock.fileno()], 5.0) == ([sock.fileno()], [])


def test_a_hung_up_peer_makes_its_socket_readable(
    high_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = high_pair
    peer.close()
    assert wait_readable([sock.fileno()], 5.0) == ([sock.fileno()], [])


def test_closed_descriptors_are_reported_not_raised() -> None:
    keep_r, keep_w = os.pipe()
    closed, other = os.pipe()  # (made after keep_*: their numbers are not reused)
    os.close(closed)
    os.close(other)
    try:
        ready, invalid = wait_readable([closed, -1, keep_r], 5.0)
        assert ready == []
        assert sorted(invalid) == sorted([closed, -1])
    finally:
        os.close(keep_r)
        os.close(keep_w)


def test_a_wait_longer_than_poll_can_count_is_a_wait_without_bound(
    high_pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = high_pair
    peer.send(b"x")  # ready at once: the point is that the timeout does not raise
    for timeout in (math.inf, 30 * 86400.0):
        assert wait_readable([sock.fileno()], timeout) == ([sock.fileno()], [])
