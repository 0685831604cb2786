"""redis-py's ``Lock`` as a leader election, the way its users write one.

    lock = r.lock(name, timeout=ttl, thread_local=False)
    lock.acquire()                  # blocking; retries SET NX every ``sleep`` = 0.1 s
    ... every ttl/3: lock.reacquire()   # keep it while leading
    lock.release()

A waiter polls (redis-py's default ``sleep`` of 0.1 s), so a handover includes up to one
poll interval. There is no fencing token and no loss event: a leader learns of a lost
lock only when ``reacquire`` raises, which this loop reports as a loss.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.exceptions import LockError, RedisError

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class RedisLockContender(Contender):
    """One ``redis.lock.Lock`` holder-to-be. URL: ``redis://h:p``."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        self.redis = redis.Redis.from_url(url, socket_timeout=ttl)
        self.lock = self.redis.lock(f"tenure-bench:{election}", timeout=ttl,
                                    thread_local=False)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.extends = 0

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.lock.reacquire()
                self.extends += 1
            except (LockError, RedisError) as exc:
                self.on_lost(f"reacquire failed: {exc}", None)
                return

    def campaign(self) -> dict[str, Any]:
        self.lock.acquire(blocking=True)
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, daemon=True)
        self._keeper.start()
        return {"acquired_at": time.monotonic()}

    def resign(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None
        self.lock.release()

    def close(self) -> None:
        self._stop.set()
        self.redis.close()

    def counters(self) -> dict[str, float]:
        return {"extends": self.extends}
