"""Lease keepalives over one open stream (``KeepaliveStream``): answered keepalives reuse
the stream and leave no thread waiting on it; a member that stops answering (a
blackholed connection: open, every byte dropped) makes the keepalive fail within its
timeout, not hang the renewer; after the path heals the next keepalive is answered on
a new stream."""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

import pytest

from tenure.adapters.etcd_connection import EtcdConnection, parse_url
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.etcd]


def waiting_in_grpc() -> list[str]:
    """Names of the threads whose stack is in grpc's polling wait for a response."""
    names = {t.ident: t.name for t in threading.enumerate()}
    found = []
    for ident, frame in sys._current_frames().items():
        stack = traceback.extract_stack(frame)
        if any(f.filename.endswith(os.path.join("grpc", "_common.py")) and f.name == "wait"
               for f in stack):
            found.append(names.get(ident, str(ident)))
    return found


def test_a_keepalive_on_a_silent_member_fails_in_its_timeout_and_the_next_one_recovers(
        etcd_cluster: Cluster) -> None:
    proxy = etcd_cluster.proxy(0)
    config = parse_url(parse_backend_url(proxy.url)[0])
    connection = EtcdConnection(config, on_failover=lambda: None)
    try:
        lease = connection.grant(10).ID
        first = connection.keepalive(lease, 2.0)
        stream = connection._keepalives
        assert first is not None and first.TTL > 0
        assert connection.keepalive(lease, 2.0).TTL > 0
        assert connection._keepalives is stream  # the same stream, not one per keepalive
        # Between keepalives no thread waits on a gRPC response iterator (it would wake
        # every 0.1 s in grpc._common.wait); no watch is open on this connection.
        assert not waiting_in_grpc(), waiting_in_grpc()

        proxy.cut(blackhole=True)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="no answer in time"):
            connection.keepalive(lease, 0.5)
        took = time.monotonic() - started
        assert took < 3.0, f"the keepalive hung {took:.1f} s past its 0.5 s timeout"

        proxy.heal()
        deadline = time.monotonic() + 20
        while True:  # gRPC reconnects the healed member in its own time (backoff <= 1 s)
            try:
                answer = connection.keepalive(lease, 2.0)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "no keepalive answered after the heal"
        assert answer is not None and answer.TTL > 0
        assert connection._keepalives is not stream
    finally:
        connection.close()
