"""etcd-sdk-python's ``Lock`` (module ``pyetcd``) as a leader election, the way its
documentation shows one.

    etcd = pyetcd.client(host, port)
    lock = etcd.lock(name, ttl=ttl)
    lock.acquire(timeout=None)   # lease grant + txn (create if absent); if taken, a
                                 # watch on the key until its delete event, then again
    lock.refresh()               # the holder refreshes the lease itself (one keepalive)
    lock.release()               # txn: delete the key if its value is still our uuid

A waiter is woken by the watch and then makes TWO round trips: a new ``LeaseGrant``
(every attempt grants a lease) and the transaction. The holder refreshes every TTL/3
from a thread of its own (the library has no renewal thread). There is no fencing
token and no loss event: a failed refresh raises in the holder's refresh call and
nothing tells the leader -- so this peer cannot take the loss-detection measurements.
One lock is one key: waiters are not queued (the first transaction after a delete
wins; every waiter is woken by the delete).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pyetcd

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class EtcdLockContender(Contender):
    """One ``pyetcd.Lock`` holder-to-be. URL: ``etcd-lock://host:port``."""

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        parts = urlsplit(url)
        self.whole_ttl = max(1, math.ceil(ttl))
        self.etcd = pyetcd.client(host=parts.hostname or "127.0.0.1", port=parts.port or 2379,
                                  timeout=max(5, self.whole_ttl))
        self.lock = self.etcd.lock(f"tenure-bench-{election}", ttl=self.whole_ttl)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _refresh(self, stop: threading.Event) -> None:
        while not stop.wait(self.whole_ttl / 3):
            try:
                self.lock.refresh()
            except Exception:  # the library tells nobody; neither does its user's loop
                return

    def campaign(self) -> dict[str, Any]:
        self.lock.acquire(timeout=None)
        acquired = time.monotonic()
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, args=(self._stop,),
                                           daemon=True, name="etcd-lock-refresh")
        self._refresher.start()
        return {"acquired_at": acquired}

    def _stop_refreshing(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None

    def resign(self) -> None:
        self._stop_refreshing()
        self.lock.release()

    def close(self) -> None:
        self._stop_refreshing()
        self.etcd.close()
