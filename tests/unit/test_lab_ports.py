"""Lab server ports (:mod:`tenure.conformance.lab.ports`): distinct, free when handed
out, and below the kernel's ephemeral range, where neither an outgoing connection's
source port nor a listener on port 0 (every lab proxy) can take one first."""

from __future__ import annotations

import socket

import pytest

from tenure.conformance.lab.ports import HOST, ephemeral_range, free_port

pytestmark = pytest.mark.unit


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    low, _ = ephemeral_range()
    drawn = [free_port() for _ in range(200)]
    assert len(set(drawn)) == len(drawn)
    assert max(drawn) < low, (max(drawn), low)
    for port in drawn[:20]:
        with socket.socket() as sock:
            sock.bind((HOST, port))  # raises if it was not free


def test_listeners_on_port_zero_never_land_on_a_drawn_port() -> None:
    drawn = {free_port() for _ in range(50)}
    listeners = []
    try:
        for _ in range(200):
            sock = socket.socket()
            listeners.append(sock)
            sock.bind((HOST, 0))
            sock.listen()
            assert sock.getsockname()[1] not in drawn
    finally:
        for sock in listeners:
            sock.close()
