"""ZooKeeper renewals prove only the PREVIOUS renewal's send time (a follower relays its
touch for our ``sync`` to the ensemble's leader in its next learner-ping reply, and the
leader does not touch the session for the forwarded ``sync``): a leadership's deadline
after a renewal is never later than the previous successful renewal's (or the session
open's) send time + TTL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tenure
from tenure import events
from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.zookeeper]

TTL = 1.2


def test_a_leaderships_deadline_after_a_renewal_counts_from_the_previous_one(
    zookeeper_cluster: Cluster,
) -> None:
    assert ZooKeeperStore.proof_lags_one_renewal
    with tenure.connect(zookeeper_cluster.url, ttl=TTL) as client:
        store = client.store
        assert isinstance(store, ZooKeeperStore)
        proofs: list[float] = []  # send times: the open's, then each successful renewal's
        checks: list[tuple[float, float]] = []  # (deadline, previous proof's send time)
        three = threading.Event()
        open_session, renew_session = store.open_session, store.renew_session

        def opening(ttl: float) -> float:
            sent = time.monotonic()
            lifetime = open_session(ttl)
            proofs.append(sent)
            return lifetime

        def renewing(held: frozenset[Any]) -> None:
            sent = time.monotonic()
            renew_session(held)
            proofs.append(sent)

        def on_event(event: events.Event) -> None:
            if (event.kind == "renewal" and event.fields.get("ok")
                    and event.fields.get("backend") == store.description):
                # Published after the renewal returned (proofs[-1] is its send time).
                checks.append((event.fields["valid_until"], proofs[-2]))
                if len(checks) >= 3:
                    three.set()

        store.open_session = opening  # type: ignore[method-assign]
        store.renew_session = renewing  # type: ignore[method-assign]
        unsubscribe = events.subscribe(on_event)
        try:
            lead = client.election("zk/proof-lag").campaign(timeout=30)
            assert three.wait(timeout=30), "three renewals did not succeed"
            for deadline, previous in checks[:3]:
                assert deadline <= previous + TTL, deadline - previous
            assert lead.deadline <= proofs[-2] + TTL
            lead.resign()
        finally:
            unsubscribe()
