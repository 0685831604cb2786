"""A guard whose watch stream ends at once, again and again (a member or proxy that
cancels every watch right after creating it), re-arms with back-off, not at round-trip
speed: adapters/etcd.py's on_response re-queues with attempt=1 (no delay) each time a
watch was made, so the attempt count never grows. FAILS on 0a6a616..ba71f55 (hundreds of
re-arms per second). ~2 s on the lab etcd."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]


def test_a_guard_stream_that_ends_at_once_backs_off(etcd_cluster: Cluster) -> None:
    with tenure.connect(etcd_cluster.url, ttl=4) as client:
        store = client.store
        assert isinstance(store, EtcdStore)
        made: list[float] = []
        real_watch = store._etcd.watch

        def ending_watch(key: bytes, start: int, on_response: Callable[[object], None],
                         **kw: object) -> Callable[[], None] | None:
            if b"guards-spin" not in key:
                return real_watch(key, start, on_response, **kw)  # type: ignore[arg-type]
            made.append(time.monotonic())
            threading.Timer(0.001, on_response, args=(None,)).start()  # ends at once
            return lambda: None

        store._etcd.watch = ending_watch  # type: ignore[method-assign]
        lead = client.election(f"guards-spin/{time.monotonic_ns()}").campaign(timeout=30)
        time.sleep(1.5)
        count = len(made)
        lead.resign()
        # back-off: a handful of re-arms in 1.5 s (0, then exponential), not hundreds
        assert count <= 10, f"{count} guard re-arms in 1.5 s: no back-off"
