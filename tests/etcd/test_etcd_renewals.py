"""Keepalives of an etcd client, counted (a load-independent guard of the idle cost).

Every keepalive costs the client gRPC work and the etcd leader a request; with 1 leader
and 10 waiting processes at TTL 2 s the waiters sent 15 of 16.5 keepalives a second. A
session that holds no leadership (a waiter's) is renewed every ``lifetime *
EtcdStore.unheld_renewal_share`` (0.45, was ``lifetime / 3``): 67 keepalives a minute
at TTL 2 s instead of 90. A leader's session is still renewed every ``lifetime / 3``,
and a waiter that wins leads only until a keepalive it SENT plus the lifetime (validity
counts from a send time, never from the win). ~5 s.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from renewal_kit import Renewals

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]

TTL = 2.0
WAITER_RENEWALS = 4


class Keepalives(Renewals):
    """:class:`Renewals` of an etcd client, and the keepalives its store sent since."""

    def __init__(self, client: tenure.Client, enough: int = 0) -> None:
        store = client.store
        assert isinstance(store, EtcdStore)
        self.store = store
        self.keepalives_before = store.keepalives
        super().__init__(client, enough)


def test_a_waiting_lease_is_kept_alive_less_often_than_a_leading_one(
    etcd_cluster: Cluster,
) -> None:
    share = EtcdStore.unheld_renewal_share
    assert share is not None and 1 / 3 < share <= 0.45
    name = f"renewals-{time.monotonic_ns()}"
    with tenure.connect(etcd_cluster.url, ttl=TTL) as holder, \
            tenure.connect(etcd_cluster.url, ttl=TTL) as waiter:
        lead = holder.election(name).campaign(timeout=30)
        leading, waiting = Keepalives(holder), Keepalives(waiter, enough=WAITER_RENEWALS)
        won: list[tenure.Leadership] = []
        campaign = threading.Thread(
            target=lambda: won.append(waiter.election(name).campaign(timeout=60)))
        campaign.start()
        try:
            assert waiting.enough.wait(30), waiting.done
            lifetime = waiter.keeper.lifetime
            assert lifetime == TTL
            assert waiter.keeper.renewal_failures == 0
            # A waiter's renewal comes share x lifetime after the previous one was sent
            # (a timer never fires early; only a failed renewal is retried sooner: none),
            # and each is ONE keepalive.
            assert min(waiting.gaps()) >= lifetime * share - 0.002, waiting.gaps()
            assert waiting.store.keepalives - waiting.keepalives_before == len(waiting.done)
            # The leader's still come every third of the lifetime (late ones aside).
            assert statistics.median(leading.gaps()) < lifetime * 0.4, leading.gaps()
            print(f"\netcd keepalives per minute at TTL {TTL:g} s: waiter "
                  f"{60 / statistics.median(waiting.gaps()):.0f}, leader "
                  f"{60 / statistics.median(leading.gaps()):.0f}")
        finally:
            lead.resign()
            campaign.join(30)
        assert won, "the waiter did not lead after the resign"
        # Its validity counts from a keepalive it sent (at most the lifetime after it).
        bound = max(waiting.done) + lifetime * (1 - waiter.keeper.drift)
        assert won[0].deadline <= bound + 1e-6, (won[0].deadline, bound)
        won[0].resign()
