"""Warm store clients for the gateway's campaigns (``tenure serve --warm-sessions N``).

    pool = WarmClients(lambda ttl: aio.connect(url, ttl=ttl), default_ttl=10, spare=2)
    pool.start()                                   # opens 2 clients in the background
    client = await pool.take(10, "vm:42:ab")       # no store round trip when warm
    ...                                            # one caller campaigns and leads on it
    await pool.give_back(client)                   # idle again (or closed)

A campaign through the gateway used to connect a new :class:`tenure.aio.Client` in the
request path: a store connection (an etcd gRPC channel, a ZooKeeper handshake, Redis and
PostgreSQL connections, a Consul HTTP pool), a session (lease grant, session create, ...)
and the keeper's threads. Here clients with their session already open wait in a pool
per TTL; a campaign takes one, and the pool refills in the background.

What is shared and what is not: a client (one store connection, ONE session) serves ONE
holder at a time, exactly as a fresh client did; nothing of a holder's liveness lives in
a shared object. A client goes back to the pool only after its holder's leadership
ended as *resigned* (the caller resigned, its keepalive lapsed, its stream closed, a
handoff landed) or its campaign timed out or was cancelled, and only if
:meth:`tenure.Client.idle` says it holds nothing (no entry, no withdrawal left to
retry) and its session is within its deadline. A client whose leadership the core
reported lost is closed, never reused. The next caller gets its own candidate id and a
fresh handoff memory. An idle pooled session holds no entry: it costs one renewal per
TTL/3 and is no candidate anywhere.

Bounds: at least ``spare`` idle clients per TTL in use (the default TTL's from the
start), at most ``4 * spare`` (more are closed as they come back), at most
``MAX_POOLS`` TTLs (the least recently used other TTL is dropped); a TTL other than the
default not asked for within ``idle`` seconds has its clients closed. ``spare=0``: a
fresh client per campaign, closed after it (the old behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from tenure import aio
from tenure.handoff import HandoffGate
from tenure.names import check_candidate_id, default_candidate_id

log = logging.getLogger("tenure.http")

MAX_POOLS = 8
Connect = Callable[[float], Awaitable[aio.Client]]
Opened = Callable[[str], None]


class WarmClients:
    """Idle clients with an open session, per TTL; see the module docstring."""

    def __init__(self, connect: Connect, *, default_ttl: float, spare: int,
                 idle: float = 60.0, on_open: Opened | None = None) -> None:
        self._connect = connect
        self.default_ttl = default_ttl
        self.spare = max(0, spare)
        self.keep = 4 * self.spare
        self.idle_after = idle
        self._on_open = on_open or (lambda where: None)
        self._idle: dict[float, deque[aio.Client]] = {}
        self._used_at: dict[float, float] = {}
        self._filling: dict[float, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self.opened = {"background": 0, "campaign": 0}
        """Clients connected (each one store connection and one session), by where."""
        self.taken = {"warm": 0, "cold": 0}
        """Campaigns given a pooled client, and campaigns that had to connect one."""

    def __len__(self) -> int:
        return sum(len(pool) for pool in self._idle.values())

    def __contains__(self, client: object) -> bool:
        return any(client is idle for pool in self._idle.values() for idle in pool)

    def start(self) -> None:
        """Fills the default TTL's pool in the background (call inside the loop)."""
        if self.spare and not self._closed:
            self._used_at[self.default_ttl] = time.monotonic()
            self._refill(self.default_ttl)
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def take(self, ttl: float, candidate_id: str | None) -> aio.Client:
        """A client with TTL ``ttl`` for one campaign by ``candidate_id`` (None: a new
        ``host:pid:random``): a pooled one when there is one, else a new connection
        (raising what :func:`tenure.aio.connect` raises). Either way the pool for
        ``ttl`` is refilled in the background."""
        name = check_candidate_id(candidate_id) if candidate_id is not None else None
        self._used_at[ttl] = time.monotonic()
        client = self._pop_idle(ttl)
        if client is None:
            client = await self._connect(ttl)
            self.taken["cold"] += 1
            self._opened("campaign")
        else:
            self.taken["warm"] += 1
        client.sync.candidate_id = name or default_candidate_id()
        client.sync.handoff_gate = HandoffGate()
        if self.spare and not self._closed:
            self._limit_pools()
            self._refill(ttl)
        return client

    async def give_back(self, client: aio.Client) -> None:
        """Keeps ``client`` for a later campaign if it is idle (holds nothing, session
        within its deadline) and its pool has room; closes it otherwise."""
        pool = self._idle.get(client.ttl)
        if (self._closed or pool is None or len(pool) >= self.keep
                or not client.sync.idle()):
            await self.discard(client)
            return
        pool.append(client)

    async def discard(self, client: aio.Client) -> None:
        """Closes ``client`` (resigning whatever it still holds); errors are logged."""
        try:
            await client.close()
        except Exception as exc:  # the session expires by itself
            log.warning("closing a caller's session failed (it expires by itself): %s", exc)

    async def close(self) -> None:
        """Stops refilling and closes every idle client."""
        self._closed = True
        tasks = [*self._filling.values(), *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        idle = [client for pool in self._idle.values() for client in pool]
        self._idle.clear()
        await asyncio.gather(*(self.discard(client) for client in idle),
                             *self._closing, return_exceptions=True)

    def _opened(self, where: str) -> None:
        self.opened[where] += 1
        self._on_open(where)

    def _pop_idle(self, ttl: float) -> aio.Client | None:
        pool = self._idle.setdefault(ttl, deque())
        while pool:
            client = pool.pop()  # the most recently used: the others may age out
            if client.sync.idle():
                return client
            self._discard_later(client)
        return None

    def _discard_later(self, client: aio.Client) -> None:
        task = asyncio.ensure_future(self.discard(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _refill(self, ttl: float) -> None:
        if len(self._idle.get(ttl, ())) >= self.spare:
            return  # full: no task (a take from a full pool is the common case)
        running = self._filling.get(ttl)
        if running is None or running.done():
            self._filling[ttl] = asyncio.ensure_future(self._fill(ttl))

    async def _fill(self, ttl: float) -> None:
        pool = self._idle.setdefault(ttl, deque())
        while not self._closed and len(pool) < self.spare and self._idle.get(ttl) is pool:
            client = await self._open_warm(ttl)
            if client is None:
                return
            if self._closed or self._idle.get(ttl) is not pool:
                await self.discard(client)
                return
            pool.append(client)

    async def _open_warm(self, ttl: float) -> aio.Client | None:
        """A new client with its session open, or None (logged). Cancelled at any point
        (``close``, ``_drop``), it still closes the client once that exists: a client
        left behind would renew its session for as long as the process lives."""
        connecting = asyncio.ensure_future(self._connect(ttl))
        try:
            client = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            connecting.add_done_callback(self._close_late_connection)
            raise
        except Exception as exc:
            log.warning("could not open a warm session (TTL %g s; campaigns connect "
                        "their own until one opens): %s", ttl, exc)
            return None
        self._opened("background")
        opening = _Opening(client)
        try:
            # on the client's own thread, the one its campaigns will run on: that
            # thread's store set-up (SQLite's connection) is done before the first one
            await client.run_blocking(opening.run, "tenure-serve-open")
        except Exception as exc:
            log.warning("could not open a warm session (TTL %g s): %s", ttl, exc)
            await self.discard(client)
            return None
        except BaseException:
            if opening.abandon():  # the thread finished first: close it here
                self._discard_later(client)
            raise
        return client

    def _close_late_connection(self, connecting: asyncio.Future[aio.Client]) -> None:
        if not connecting.cancelled() and connecting.exception() is None:
            self._discard_later(connecting.result())

    def _limit_pools(self) -> None:
        others = sorted((at, ttl) for ttl, at in self._used_at.items()
                        if ttl != self.default_ttl)
        while len(others) >= MAX_POOLS:
            self._drop(others.pop(0)[1])

    def _drop(self, ttl: float) -> None:
        self._used_at.pop(ttl, None)
        filling = self._filling.pop(ttl, None)
        if filling is not None:
            filling.cancel()
        for client in self._idle.pop(ttl, ()):
            self._discard_later(client)

    async def _sweep(self) -> None:
        """Drops pools of other TTLs unused for ``idle`` seconds and idle clients whose
        session failed (their keeper opens a new one, but a take checks anyway)."""
        period = max(1.0, self.idle_after / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for ttl, at in list(self._used_at.items()):
                if ttl != self.default_ttl and now - at > self.idle_after:
                    self._drop(ttl)
            for ttl, pool in self._idle.items():
                for client in [c for c in pool if not c.sync.idle()]:
                    with contextlib.suppress(ValueError):
                        pool.remove(client)
                    self._discard_later(client)
                if len(pool) < self.spare:
                    self._refill(ttl)


class _Opening:
    """Opens a new client's session in one of the client's threads. If the fill awaiting it gave
    up meanwhile (:meth:`abandon` before the thread finished), the thread closes the
    client itself: no event loop is needed for that, so it holds even while the loop
    shuts down."""

    def __init__(self, client: aio.Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._finished = False
        self._abandoned = False

    def run(self) -> None:
        try:
            self.client.sync.keeper.ensure_open()
        finally:
            with self._lock:
                self._finished = True
                abandoned = self._abandoned
            if abandoned:
                try:
                    self.client.sync.close()
                except Exception as exc:  # the session expires by itself
                    log.warning("closing an abandoned warm session failed (it expires "
                                "by itself): %s", exc)

    def abandon(self) -> bool:
        """Marks the opening abandoned; True if the thread had already finished (then
        the caller must close the client)."""
        with self._lock:
            self._abandoned = True
            return self._finished
