"""Review R1 (session 4): the direct wake reader (78bb951) makes a dropped pub/sub
subscription again only after a first 0.5 s pause (``DirectReader._fix`` waits before
its first try), so a resign that comes while the waiter's subscription is down wakes
it only then: ~0.45 s instead of a few ms. Fails on e8bec0d; fix: try at once, then
back off. ~2 s."""

from __future__ import annotations

import threading
import time

import pytest
import redis

import tenure
from tenure.conformance.lab.cluster import wait_until
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.redis]


def test_a_resign_while_the_wake_subscription_is_down_wakes_the_waiter_promptly(
    lab: LabFactory,
) -> None:
    cluster = lab.start("redis", nodes=1)
    host, port = cluster.nodes[0].client_address.rsplit(":", 1)
    admin = redis.Redis(host=host, port=int(port), socket_timeout=10)
    name = f"review/resubscribe/{time.monotonic_ns()}"
    with tenure.connect(cluster.url, ttl=2, candidate_id="a") as a, \
            tenure.connect(cluster.url, ttl=2, candidate_id="b") as b:
        lead = a.election(name).campaign(timeout=10)
        won: list[float] = []
        waiter = threading.Thread(
            target=lambda: (b.election(name).campaign(timeout=20), won.append(time.monotonic())))
        waiter.start()
        wait_until(lambda: len(a.election(name).contenders()) == 2, 10, "b queued")
        time.sleep(0.2)  # b waits on its wake subscription
        assert admin.client_kill_filter(_type="pubsub") == 1  # b's subscription drops
        time.sleep(0.05)
        resigned = time.monotonic()
        lead.resign()
        waiter.join(timeout=20)
        assert won, "b never won"
        took = won[0] - resigned
    assert took < 0.25, f"b won {took:.3f} s after the resign (the subscription came back late)"
