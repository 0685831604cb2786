"""The direct wake reader (:class:`tenure.adapters.redis_quorum.DirectReader`) on a
real instance: one subscription per instance survives a first subscription that
outlived start()'s wait; a cancel interrupts a waiting campaign's signal, whether its
thread reads the feed or waits on the bell, so nothing polls the cancel; the wake
subscriptions probe their peer with TCP keepalive at intervals set by the TTL. Each
test < 2 s."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

import tenure
from tenure.adapters import redis_quorum as quorum
from tenure.cancel import Flag
from tenure.conformance.lab.cluster import Cluster, wait_until

pytestmark = [pytest.mark.redis]


def instance(cluster: Cluster) -> quorum.Instance[None]:
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    return quorum.Instance(host, int(port), 1.0, {}, lambda client: None)


def test_a_first_subscription_landing_after_start_gave_up_is_closed_not_kept_twice(
    redis_cluster: Cluster,
) -> None:
    inst = instance(redis_cluster)
    channel = f"test:wake:{time.monotonic_ns()}"
    made = inst.subscriber.pubsub
    calls: list[Any] = []

    def pubsub() -> Any:
        p = made()
        calls.append(p)
        if len(calls) == 1:  # the first try is slow: start() gives up on it
            subscribe = p.subscribe

            def slow(*args: Any) -> Any:
                time.sleep(0.3)
                return subscribe(*args)

            p.subscribe = slow
        return p

    inst.subscriber.pubsub = pubsub  # type: ignore[method-assign]
    bell, stop = quorum.Bell(), threading.Event()
    reader = quorum.DirectReader(bell, "wake", quorum.Feed(channel, direct=True), [inst],
                                 stop)
    pool = ThreadPoolExecutor(2)
    try:
        reader.start(pool, 0.05)
        wait_until(lambda: len(calls) == 2, 5, "the resubscription ran")
        pool.shutdown(wait=True)  # the slow first try has ended too
        wait_until(lambda: not reader._fixing, 5, "the resubscription ended")
        admin = redis.Redis(host=inst.client.connection_pool.connection_kwargs["host"],
                            port=inst.client.connection_pool.connection_kwargs["port"])
        assert admin.pubsub_numsub(channel) == [(channel.encode(), 1)]
        kept = reader._subs[0]
        assert kept is not None
        assert [p.connection is None for p in calls].count(True) == 1  # the other: closed
        assert kept.connection is not None
    finally:
        stop.set()
        reader.close()
        inst.close()


def test_a_cancel_wakes_waiting_campaigns_at_once_without_slices(
    redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two waiters on one client: one reads the wake feed (in select()), the other
    # waits on the bell; each is woken by its cancel Flag, and neither waits in slices
    # of the core's WAIT_SLICE (0.2 s) before that (TTL 10: the poll is 1 s).
    waits: dict[str, list[float]] = {}
    original = quorum.BellSignal.wait

    def counted(self: quorum.BellSignal, timeout: float) -> bool:
        waits.setdefault(threading.current_thread().name, []).append(timeout)
        return original(self, timeout)

    monkeypatch.setattr(quorum.BellSignal, "wait", counted)
    stamp = time.monotonic_ns()
    names = [f"test/interrupt/{stamp}/{i}" for i in range(2)]
    with tenure.connect(redis_cluster.url, ttl=10, candidate_id="lead") as a, \
            tenure.connect(redis_cluster.url, ttl=10, candidate_id="waiter") as b:
        leads = [a.election(name).campaign(timeout=10) for name in names]
        flags = [Flag(), Flag()]
        ended: dict[int, tuple[float, BaseException]] = {}

        def wait(i: int) -> None:
            try:
                b.election(names[i]).campaign(timeout=30, cancel=flags[i])
            except BaseException as exc:  # recorded, asserted below
                ended[i] = (time.monotonic(), exc)

        threads = [threading.Thread(target=wait, args=(i,), name=f"waiter-{i}")
                   for i in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: all(len(a.election(n).contenders()) == 2 for n in names), 10,
                   "both queued")
        time.sleep(0.6)  # both wait on their signals (in slices: 3 waits or more each)
        for name in ("waiter-0", "waiter-1"):
            # Waits to the poll (1 s after the last step), not in slices; a second
            # wait only after a re-step (a wake message or a (re)subscription ring).
            seen = list(waits.get(name, []))
            assert seen and max(seen) > 0.5, f"{name} waited in slices: {seen}"
            assert len(seen) <= 2, f"{name} woke {len(seen)} times in 0.6 s: {seen}"
        for i in range(2):
            set_at = time.monotonic()
            flags[i].set()
            threads[i].join(timeout=10)
            assert i in ended, "the cancelled campaign did not end"
            took, exc = ended[i][0] - set_at, ended[i][1]
            assert isinstance(exc, tenure.CampaignCancelled), exc
            assert took < 0.5, f"campaign {i} ended {took:.3f} s after its cancel"
        for lead in leads:
            lead.resign()


def test_wake_subscriptions_probe_a_silent_peer_within_seconds_of_the_ttl(
    redis_cluster: Cluster,
) -> None:
    # A half-open connection (peer gone without a FIN) is found by keepalive probes:
    # idle 2 x timeout, then 2 probes a timeout apart (timeout = TTL / 4, whole s).
    name = f"test/keepalive/{time.monotonic_ns()}"
    with tenure.connect(redis_cluster.url, ttl=2, candidate_id="lead") as a, \
            tenure.connect(redis_cluster.url, ttl=2, candidate_id="waiter") as b:
        lead = a.election(name).campaign(timeout=10)
        cancel = Flag()

        def wait() -> None:
            with contextlib.suppress(tenure.CampaignCancelled):
                b.election(name).campaign(timeout=30, cancel=cancel)

        waiter = threading.Thread(target=wait)
        waiter.start()
        try:
            readers = b.store._quorum._readers  # type: ignore[attr-defined]
            wait_until(lambda: "wake" in readers and readers["wake"]._subs[0] is not None,
                       10, "subscribed")
            sock = readers["wake"]._subs[0].connection._sock
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 2
            assert quorum.keepalive_after(2 / 4) == 3
            assert quorum.keepalive_after(1.0) == 4  # the default timeout (TTL >= 4 s)
        finally:
            cancel.set()
            waiter.join(timeout=10)
            lead.resign()


def test_closing_the_reader_while_a_thread_reads_wakes_it_without_reconnecting(
    redis_cluster: Cluster,
) -> None:
    # The closing thread shuts the subscription's socket under the reader's select():
    # the reader must not read that connection again (redis-py would connect it anew,
    # unsubscribed, and can fail inside its parser). 10 rounds, ~0.1 s each.
    inst = instance(redis_cluster)
    errors: list[BaseException] = []
    try:
        for _ in range(10):
            bell, stop = quorum.Bell(), threading.Event()
            reader = quorum.DirectReader(
                bell, "wake", quorum.Feed(f"test:close:{time.monotonic_ns()}", direct=True),
                [inst], stop)
            reader.start(ThreadPoolExecutor(1), 5)
            with bell.cond:
                signal = quorum.BellSignal(bell, "wake", "topic", 1, reader)
            fired: list[bool] = []

            def wait(signal: quorum.BellSignal = signal, fired: list[bool] = fired) -> None:
                try:
                    fired.append(signal.wait(5))
                except BaseException as exc:  # recorded, asserted below
                    errors.append(exc)

            thread = threading.Thread(target=wait)
            thread.start()
            wait_until(lambda r=reader: r._reading is not None, 5, "the thread reads")
            stop.set()
            closed_at = time.monotonic()
            reader.close()
            thread.join(timeout=5)
            assert not errors, errors
            assert fired == [True]
            assert time.monotonic() - closed_at < 1.0
            assert all(p is None for p in reader._subs)
        pubsubs = inst.subscriber.connection_pool._in_use_connections  # type: ignore[attr-defined]
        assert not [c for c in pubsubs if getattr(c, "_sock", None) is not None]
    finally:
        inst.close()


def test_a_subscription_on_a_descriptor_above_1024_is_read_not_dropped(
    redis_cluster: Cluster,
) -> None:
    # select() refuses descriptors >= FD_SETSIZE (1024); a process holding hundreds of
    # candidates' connections gets there, and the reader then dropped and re-made its
    # subscriptions at every read, each re-made one waking every waiter of the feed.
    with open("/dev/null", "rb") as null:
        fillers = [os.dup(null.fileno())]
        while fillers[-1] < 1100:
            fillers.append(os.dup(null.fileno()))
    inst = instance(redis_cluster)
    bell, stop = quorum.Bell(), threading.Event()
    channel = f"test:highfd:{time.monotonic_ns()}"
    reader = quorum.DirectReader(bell, "wake", quorum.Feed(channel, direct=True), [inst],
                                 stop)
    admin = redis.Redis(host=inst.client.connection_pool.connection_kwargs["host"],
                        port=inst.client.connection_pool.connection_kwargs["port"])
    try:
        reader.start(ThreadPoolExecutor(1), 5)
        subscribed = reader._subs[0]
        assert subscribed is not None
        assert subscribed.connection._sock.fileno() >= 1024
        with bell.cond:
            reader.catch_up()
            signal = quorum.BellSignal(bell, "wake", "topic", 1, reader)
        admin.publish(channel, "topic 7")
        assert signal.wait(5), "the message on a high descriptor did not fire the signal"
        assert reader._subs[0] is subscribed, "the subscription was dropped and re-made"
        assert bell.counts.get(("wake", quorum.Bell.ALL)) == 1  # its first subscription only
        assert bell.notes[("wake", "topic")] == 7
    finally:
        stop.set()
        reader.close()
        inst.close()
        admin.close()
        for fd in fillers:
            os.close(fd)
