"""EXPERIMENT ONLY, UNSAFE: tenure on ZooKeeper with the leader's own-node watch
switched off, to measure what that safety step costs a resign handover.

A tenure leader watches its own node, so that its deletion by another client is a
prompt loss (the contract's "a newer token seen": the successor leads at once);
:mod:`tenure.adapters.zookeeper_watches`. Its own ``delete`` then fires that watch
too. kazoo's ``Election`` holder watches nothing: it never learns that its node was
deleted. This contender is tenure without that watch: what the handover would cost if
tenure skipped the step as kazoo does. Used by ``handover_trace --tools`` only; never a
system of ``tenure bench``, never offered to users.
"""

from __future__ import annotations

from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.benchmarks.peers.base import LostCallback, Unsupported
from tenure.conformance.benchmarks.peers.tenure_native import TenureContender


def _never(ticket: object) -> bool:
    return False


class UnwatchedTenureContender(TenureContender):
    """:class:`TenureContender` whose ZooKeeper store never arms a node's own watch."""

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        store = self.client.store
        if not isinstance(store, ZooKeeperStore):
            self.client.close()
            raise Unsupported("tenure-unwatched is a ZooKeeper experiment")
        store._watches.needs_arming = _never  # type: ignore[method-assign]
