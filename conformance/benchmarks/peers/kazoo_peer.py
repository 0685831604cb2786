"""kazoo's ``Election`` recipe (ZooKeeper), used as its docstring shows.

    election = zk.Election("/electionpath", "my-identifier")
    election.run(my_leader_function)   # blocks until elected; leads while it runs

``Election`` is a ``Lock``: ephemeral sequential nodes, each waiter watching its
predecessor. Leadership lasts while the function runs, so ``campaign`` runs
``election.run`` in a thread whose function signals "elected" and waits for the
resign; ``resign`` ends the function and waits until ``run`` has released the node.
The session timeout is the TTL. kazoo tells a leader nothing when its session is lost
until it reconnects (a connection-state listener sees SUSPENDED, then LOST), and
``run`` does not interrupt the function.
"""

from __future__ import annotations

import threading
from typing import Any

from kazoo.client import KazooClient, KazooState

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class KazooContender(Contender):
    """One ``kazoo.recipe.election.Election`` candidate. URL: ``kazoo://h:p,h:p``."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        hosts = url.split("://", 1)[-1]
        self.zk = KazooClient(hosts=hosts, timeout=ttl)
        self.zk.start()
        self.zk.add_listener(self._state)
        self.election_ = self.zk.Election(f"/tenure-bench/{election}", member_id)
        self._elected = threading.Event()
        self._resign = threading.Event()
        self._thread: threading.Thread | None = None
        self._leading = False

    def _state(self, state: str) -> None:
        if self._leading and state == KazooState.LOST:
            self.on_lost("kazoo session LOST", None)

    def _lead(self) -> None:
        self._leading = True
        self._elected.set()
        self._resign.wait()
        self._leading = False

    def campaign(self) -> dict[str, Any]:
        self._elected.clear()
        self._resign.clear()
        self._thread = threading.Thread(target=self.election_.run, args=(self._lead,),
                                        daemon=True)
        self._thread.start()
        self._elected.wait()
        return {}

    def resign(self) -> None:
        self._resign.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self._resign.set()
        self.zk.stop()
        self.zk.close()
