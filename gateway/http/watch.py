"""One watch per election inside the gateway; ``leader`` and ``observe`` read from it.

    watches = Watches(client)              # an aio.Client; no session is opened
    info = await watches.get("jobs/a").current()
    async for seq, info in watches.get("jobs/a").follow(): ...

A :class:`Watch` runs the core's ``observe`` (store notifications, re-read after every
outage) once per election, however many HTTP requests read it, and keeps the current
state plus the last ``HISTORY`` changes. A follower gets the current state, then every
change in order (the core delivers them in token order); one that falls more than
``HISTORY`` changes behind skips to the newest state rather than stalling the others.
Watches nobody used for ``idle`` seconds are stopped. The cache may trail the store by
the notification delay; ``GET .../leader?fresh=true`` reads the store instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from tenure import aio
from tenure.store import LeaderInfo

log = logging.getLogger("tenure.http")

HISTORY = 1024


class WatchFailed(Exception):
    """The watch stopped (store error it could not retry); the next request restarts it."""


class Watch:
    """The cached leader of one election and its recent changes.

        watch = Watch(client.election("e")); watch.start()
        await watch.current()
        await watch.stop()
    """

    def __init__(self, election: aio.Election) -> None:
        self.election = election
        self.state: LeaderInfo | None = None
        self.seq = 0
        self.history: deque[tuple[int, LeaderInfo | None]] = deque(maxlen=HISTORY)
        self.ready = asyncio.Event()
        self.failed: str = ""
        self.followers = 0
        self.last_used = time.monotonic()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts observing (inside the running loop)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    @property
    def running(self) -> bool:
        """False once the watch has stopped or failed."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        try:
            async for state in self.election.observe():
                async with self._changed:
                    self.seq += 1
                    self.state = state
                    self.history.append((self.seq, state))
                    self.ready.set()
                    self._changed.notify_all()
        except Exception as exc:
            log.warning("watch of %s failed: %s", self.election.name, exc)
            self.failed = str(exc) or exc.__class__.__name__
        finally:
            async with self._changed:
                if not self.failed:
                    self.failed = "the watch stopped"
                self.ready.set()
                self._changed.notify_all()

    async def current(self, timeout: float) -> LeaderInfo | None:
        """The cached leader (waits up to ``timeout`` for the first read)."""
        self.last_used = time.monotonic()
        if not self.ready.is_set():  # a wait_for costs a task: only for the first read
            await asyncio.wait_for(self.ready.wait(), timeout=timeout)
        if self.failed and not self.history:
            raise WatchFailed(self.failed)
        return self.state

    async def follow(self, first_timeout: float) -> AsyncIterator[tuple[int, LeaderInfo | None]]:
        """Yields ``(seq, state)``: the current state, then every change in order.
        Raises WatchFailed if the watch stops."""
        self.followers += 1
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=first_timeout)
            async with self._changed:
                if not self.history:
                    raise WatchFailed(self.failed)
                seq, state = self.history[-1]
            yield seq, state
            while True:
                async with self._changed:
                    await self._changed.wait_for(self._newer_than(seq))
                    if self.seq == seq:
                        raise WatchFailed(self.failed)
                    oldest = self.history[0][0]
                    pending = [item for item in self.history if item[0] > seq]
                    if pending and pending[0][0] > seq + 1 and oldest > seq + 1:
                        pending = pending[-1:]  # fell behind: skip to the newest
                for seq, state in pending:
                    yield seq, state
        finally:
            self.followers -= 1
            self.last_used = time.monotonic()

    def _newer_than(self, seq: int) -> Callable[[], bool]:
        return lambda: self.seq > seq or bool(self.failed)

    async def stop(self) -> None:
        """Stops observing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Watches:
    """The gateway's watches by election name, started on first use, stopped when idle.

        watches = Watches(client, idle=60); watches.start()
        watch = watches.get("jobs/a")
        await watches.close()
    """

    def __init__(self, client: aio.Client, *, idle: float = 60.0, limit: int = 4096) -> None:
        self.client = client
        self.idle = idle
        self.limit = limit
        self._watches: dict[str, Watch] = {}
        self._janitor: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._watches)

    def start(self) -> None:
        """Starts the janitor that stops idle watches."""
        if self._janitor is None:
            self._janitor = asyncio.ensure_future(self._sweep())

    def get(self, name: str) -> Watch:
        """The running watch of ``name`` (validated by the caller), started if needed."""
        watch = self._watches.get(name)
        if watch is None or not watch.running:
            if watch is None and len(self._watches) >= self.limit:
                self._evict()
            watch = Watch(self.client.election(name))
            self._watches[name] = watch
            watch.start()
        watch.last_used = time.monotonic()
        return watch

    def _evict(self) -> None:
        idle = [w for w in self._watches.values() if w.followers == 0]
        if idle:
            oldest = min(idle, key=lambda w: w.last_used)
            del self._watches[oldest.election.name]
            task = asyncio.ensure_future(oldest.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.idle / 2))  # a timer, not synchronisation
            now = time.monotonic()
            for name, watch in list(self._watches.items()):
                if watch.followers == 0 and now - watch.last_used > self.idle:
                    del self._watches[name]
                    await watch.stop()

    async def close(self) -> None:
        """Stops every watch and the janitor."""
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for watch in list(self._watches.values()):
            await watch.stop()
        self._watches.clear()
