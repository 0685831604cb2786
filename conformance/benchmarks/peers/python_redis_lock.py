"""python-redis-lock's ``Lock`` as a leader election, the way its README shows one.

    lock = redis_lock.Lock(conn, name, expire=ttl, auto_renewal=True)
    lock.acquire()      # SET NX EX; if busy, BLPOP on the lock's signal list, then again
    ...                 # its own thread extends the key every expire * 2/3
    lock.release()      # one script: compare-and-delete + RPUSH to the signal list

A waiter blocks in ``BLPOP`` and is woken by the release: one ``SET NX`` after the wake
(no poll). The expiry is whole seconds (``int(expire)``). There is no fencing token
and no loss event: when an extension fails, the renewal thread raises and ends, and the
holder is not told -- so this peer cannot take the loss-detection measurements.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
import redis_lock  # type: ignore[import-untyped, import-not-found, unused-ignore]

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class PythonRedisLockContender(Contender):
    """One ``redis_lock.Lock`` holder-to-be. URL: ``redis://h:p``."""

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        expire = max(1, math.ceil(ttl))
        # BLPOP blocks up to `expire` seconds: the socket must wait longer than that.
        self.redis = redis.Redis.from_url(url, socket_timeout=expire + 5)
        self.lock = redis_lock.Lock(self.redis, f"tenure-bench:{election}", expire=expire,
                                    id=member_id, auto_renewal=True)

    def campaign(self) -> dict[str, Any]:
        self.lock.acquire(blocking=True)
        return {"acquired_at": time.monotonic()}

    def resign(self) -> None:
        self.lock.release()

    def close(self) -> None:
        self.redis.close()
