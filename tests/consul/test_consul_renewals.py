"""Renewals of a Consul client, counted (a load-independent guard of the store's idle cost).

Every renewal is a request to Consul's leader, per session: with 1 leader and 10 waiting
processes that was most of the store's idle CPU. A session that holds no leadership (a
waiter's) is renewed every ``lifetime * ConsulStore.unheld_renewal_share`` (0.45, was
``lifetime / 3``): 133 renewals a minute at TTL 2 s instead of 180. A leader's session
is still renewed every ``lifetime / 3``, and a waiter that wins leads only until a
renewal it SENT plus the lifetime (validity counts from a send time, never from the
win). ~3 s.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from renewal_kit import Renewals

import tenure
from tenure.adapters.consul import ConsulStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.consul]

TTL = 2.0
"""Consul is sent TTL/2: the session's lifetime is 1 s."""
WAITER_RENEWALS = 5


def test_a_waiting_session_is_renewed_less_often_than_a_leading_one(
    consul_cluster: Cluster,
) -> None:
    share = ConsulStore.unheld_renewal_share
    assert share is not None and 1 / 3 < share <= 0.45
    name = f"renewals-{time.monotonic_ns()}"
    with tenure.connect(consul_cluster.url, ttl=TTL) as holder, \
            tenure.connect(consul_cluster.url, ttl=TTL) as waiter:
        lead = holder.election(name).campaign(timeout=30)
        leading, waiting = Renewals(holder), Renewals(waiter, enough=WAITER_RENEWALS)
        won: list[tenure.Leadership] = []
        campaign = threading.Thread(
            target=lambda: won.append(waiter.election(name).campaign(timeout=60)))
        campaign.start()
        try:
            assert waiting.enough.wait(30), waiting.done
            lifetime = waiter.keeper.lifetime
            assert lifetime == TTL / 2
            # A waiter's renewal comes share x lifetime after the previous one sent (a
            # timer never fires early; a failed renewal would be retried sooner: none).
            assert min(waiting.gaps()) >= lifetime * share - 0.002, waiting.gaps()
            assert waiter.keeper.renewal_failures == 0
            # The leader's still come every third of the lifetime (late ones aside).
            assert statistics.median(leading.gaps()) < lifetime * 0.4, leading.gaps()
            print(f"\nconsul renewals per minute at TTL {TTL:g} s: waiter "
                  f"{60 / statistics.median(waiting.gaps()):.0f}, leader "
                  f"{60 / statistics.median(leading.gaps()):.0f}")
        finally:
            lead.resign()
            campaign.join(30)
        assert won, "the waiter did not lead after the resign"
        # Its validity counts from a renewal it sent (at most the lifetime after it).
        bound = max(waiting.done) + lifetime * (1 - waiter.keeper.drift)
        assert won[0].deadline <= bound + 1e-6, (won[0].deadline, bound)
        won[0].resign()
