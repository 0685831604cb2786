"""Leaderships the gateway holds on behalf of HTTP callers, each tied to the caller's
liveness.

    holders = Holders(backend_url, default_ttl=10)
    holder = await holders.campaign("jobs/a", owner=None, mode="handle", ...)
    holders.keepalive(holder)            # within holder.ttl, or the reaper resigns it

Each campaign gets its OWN :class:`tenure.aio.Client`, so its own store session, for as
long as it campaigns and leads: two callers can campaign in one election through one
gateway, ending one caller's leadership never touches another's, and if the gateway
itself dies every session it held expires within its TTL. The client comes warm from
:class:`tenure.http.pool.WarmClients` (connection and session already open) and goes
back there once the leadership ended as resigned; one the core reported lost is closed.
A holder in ``handle`` mode is resigned by the reaper once ``ttl`` seconds pass without
a keepalive; in ``stream`` mode, as soon as the streaming response closes. Either way
the gateway's own validity deadline (the core's) still applies: a loss ends the holder
and is reported to the caller (410 on the next call, a ``lost`` event on the stream).

An ended holder (lost, resigned, keepalive lapsed, gateway stopping) is kept as a
tombstone for ``TOMBSTONE_SECONDS`` (at most ``MAX_TOMBSTONES`` of them) so that its
owner's next call answers 410 with the reason, not 404; after that the handle is
unknown. :meth:`Holders.shutdown` ends every holder as ``resigned`` first, so a stream
holder is told before the gateway exits.

A caller's own view of validity: ``valid_for`` in every answer is measured when the
answer is built, as ``min(core deadline, keepalive deadline) - now``; a caller that
adds it to the time it SENT the request never believes in leadership longer than the
gateway does (the drift allowance of the core covers clock rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenure import aio
from tenure.errors import CampaignCancelled, CampaignTimeout
from tenure.handoff import HandoffResult
from tenure.http.pool import Opened, WarmClients

log = logging.getLogger("tenure.http")

MODES = ("handle", "stream")
TOMBSTONE_SECONDS = 600.0
MAX_TOMBSTONES = 10_000


class UnknownHandle(Exception):
    """No leadership with this handle belongs to the caller (or it has ended)."""


class TooManyCampaigns(Exception):
    """The gateway already holds its maximum number of campaigns."""


@dataclass(eq=False)
class Holder:
    """One campaign/leadership held for an HTTP caller."""

    handle: str
    owner: str | None
    mode: str
    ttl: float
    client: aio.Client
    leadership: aio.Leadership
    keepalive_until: float
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    end_kind: str = ""  # "resigned" or "lost" once ended
    closing: asyncio.Task[None] | None = None  # the one release of ``client``
    handoffs: int = 0  # handoffs still running on ``client``
    handoffs_done: asyncio.Event = field(default_factory=asyncio.Event)  # set at 0

    @property
    def election(self) -> str:
        """The election name."""
        return self.leadership.election

    def valid_for(self) -> float:
        """Seconds this leadership is still valid for, as the gateway sees it now."""
        if self.ended.is_set():
            return 0.0
        remaining = self.leadership.remaining()
        if self.mode == "handle":
            remaining = min(remaining, self.keepalive_until - time.monotonic())
        return max(0.0, remaining)

    def describe(self) -> dict[str, object]:
        """The JSON view returned to the owner."""
        lead = self.leadership
        return {
            "handle": self.handle,
            "election": lead.election,
            "candidate_id": lead.candidate_id,
            "value": lead.value.decode("utf-8", "replace"),
            "token": lead.token,
            "mode": self.mode,
            "ttl": self.ttl,
            "valid_for": round(self.valid_for(), 6),
            "keepalive_within": self.ttl if self.mode == "handle" else None,
            "lost": self.ended.is_set(),
            "lost_reason": self.end_reason or None,
        }


class Holders:
    """Every leadership held for callers: campaign, lookup by handle, keepalive, end.

        holders = Holders(url, default_ttl=10); holders.start()
        h = await holders.campaign(...); holders.get(h.handle, owner)
        await holders.close()
    """

    def __init__(
        self, backend_url: str | None, *, default_ttl: float, max_campaigns: int = 256,
        config_file: str | None = None, on_change: Callable[[str, Holder], None] | None = None,
        warm: int = 0, on_open: Opened | None = None,
    ) -> None:
        self.backend_url = backend_url
        self.default_ttl = default_ttl
        self.max_campaigns = max_campaigns
        self.config_file = config_file
        self._on_change = on_change or (lambda kind, holder: None)
        self._held: dict[str, Holder] = {}
        self._ended: OrderedDict[str, tuple[Holder, float]] = OrderedDict()
        self._pending = 0
        self._wake = asyncio.Event()
        self._reaper_due: float | None = None
        """When the sleeping reaper wakes by itself (None: only when woken)."""
        self.reaper_rounds = 0
        """Rounds of the reaper so far: it runs when a keepalive deadline may be due,
        not on every campaign or keepalive."""
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.pool = WarmClients(self._connect, default_ttl=default_ttl, spare=warm,
                                on_open=on_open)

    def _connect(self, ttl: float) -> Awaitable[aio.Client]:
        return aio.connect(self.backend_url, ttl=ttl, config_file=self.config_file)

    def __len__(self) -> int:
        return len(self._held)

    @property
    def campaigning(self) -> int:
        """Campaigns still waiting to win."""
        return self._pending

    def start(self) -> None:
        """Starts the reaper and fills the warm pool (call inside the running loop)."""
        self.pool.start()
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap())

    async def campaign(
        self, election: str, *, owner: str | None, mode: str, candidate_id: str | None,
        value: bytes, timeout: float | None, ttl: float | None,
        priority: int | None = None,
    ) -> Holder:
        """Campaigns with a client of its own (warm from the pool, else connected now)
        and returns the held leadership. Raises the core's errors; cancelling the
        awaiting task (the HTTP caller went away) removes the queue entry, or resigns
        if it had just won."""
        if len(self._held) + self._pending >= self.max_campaigns:
            raise TooManyCampaigns(
                f"this gateway already holds {self.max_campaigns} campaigns (--max-campaigns)"
            )
        handle = secrets.token_urlsafe(32)  # now: the syscall is off the way back
        self._pending += 1
        try:
            client = await self.pool.take(ttl or self.default_ttl, candidate_id)
            try:
                lead = await client.election(election).campaign(value, timeout=timeout,
                                                                 priority=priority)
            except (CampaignTimeout, CampaignCancelled, asyncio.CancelledError):
                await asyncio.shield(self.pool.give_back(client))  # closed unless idle
                raise
            except BaseException:
                await asyncio.shield(self.pool.discard(client))
                raise
        finally:
            self._pending -= 1
        holder = Holder(
            handle=handle, owner=owner, mode=mode, ttl=client.ttl,
            client=client, leadership=lead, keepalive_until=time.monotonic() + client.ttl,
        )
        lead.on_lost(lambda _lead, reason: self._lost(holder, reason))
        self._held[holder.handle] = holder
        if self._reaper_due is None or holder.keepalive_until < self._reaper_due:
            self._wake.set()  # else the reaper wakes earlier anyway and sees this one
        self._on_change("won", holder)
        if lead.lost:
            self._lost(holder, lead.lost_reason)
        return holder

    def get(self, handle: str, owner: str | None) -> Holder:
        """The holder with ``handle`` created by ``owner``, held or ended (a tombstone:
        ``ended`` is set); UnknownHandle otherwise (the same answer for a wrong owner,
        so handles cannot be probed)."""
        holder = self._held.get(handle)
        if holder is None:
            self._forget_old_tombstones()
            holder = self._ended.get(handle, (None, 0.0))[0]
        if holder is None or holder.owner != owner:
            raise UnknownHandle(handle)
        return holder

    async def handoff(
        self, holder: Holder, to: str, timeout: float, on_failure: str,
    ) -> HandoffResult[aio.Leadership]:
        """Hands ``holder``'s leadership to the waiting candidate ``to`` (see
        :mod:`tenure.handoff`). Once released, the holder ends as resigned ("handed off
        to ..."); when this candidate leads again after a failed handoff with
        ``keep``, the holder keeps its handle and carries the new leadership."""
        holder.handoffs += 1
        holder.handoffs_done.clear()
        try:
            result = await holder.leadership.handoff(to, timeout=timeout,
                                                     on_failure=on_failure)
            kept = result.leadership
            if kept is not None and kept is not holder.leadership:
                holder.leadership = kept  # resigned by the release if the holder ended
                kept.on_lost(lambda _lead, reason: self._lost(holder, reason))
                holder.keepalive_until = time.monotonic() + holder.ttl
        finally:
            holder.handoffs -= 1
            if not holder.handoffs:
                holder.handoffs_done.set()
        if kept is None and result.released:
            how = "handed off to" if result.ok else "resigned after a failed handoff to"
            await self.end(holder, f"{how} {to!r}")
        return result

    def keepalive(self, holder: Holder) -> None:
        """Extends a handle-mode holder's keepalive deadline to now + ttl."""
        if not holder.ended.is_set():
            # only later: the reaper, due at the earliest deadline, sees it when it wakes
            holder.keepalive_until = time.monotonic() + holder.ttl

    async def end(self, holder: Holder, reason: str, kind: str = "resigned") -> None:
        """Resigns (if still held) and gives the holder's client back to the pool (or
        closes it); idempotent (the first ``reason`` and ``kind`` -- "resigned" or
        "lost" -- stay)."""
        first = self._mark_ended(holder, reason, kind)
        release = self._release(holder, reuse=True)
        if holder.handoffs:  # released once the handoff ends; close() waits for it
            self._closing.add(release)
            release.add_done_callback(self._closing.discard)
        else:
            await asyncio.shield(release)
        if first:
            self._on_change("ended", holder)

    async def shutdown(self, reason: str = "the gateway is shutting down") -> None:
        """Ends every holder as ``resigned`` with ``reason`` (stream holders see it on
        their stream before it closes) and resigns their sessions; new campaigns can
        still start (``close`` ends those)."""
        await asyncio.gather(*(self.end(h, reason) for h in list(self._held.values())))

    async def close(self) -> None:
        """Resigns every holder, stops the reaper and closes every pooled client."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.shutdown()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self.pool.close()

    def _mark_ended(self, holder: Holder, reason: str, kind: str) -> bool:
        """Moves ``holder`` to the tombstones; True the first time."""
        self._held.pop(holder.handle, None)
        if holder.ended.is_set():
            return False
        holder.end_reason = reason
        holder.end_kind = kind
        holder.ended.set()
        self._ended[holder.handle] = (holder, time.monotonic() + TOMBSTONE_SECONDS)
        while len(self._ended) > MAX_TOMBSTONES:
            self._ended.popitem(last=False)
        return True

    def _forget_old_tombstones(self) -> None:
        now = time.monotonic()
        while self._ended:
            handle, (_, until) = next(iter(self._ended.items()))
            if until > now:
                break
            del self._ended[handle]

    def _lost(self, holder: Holder, reason: str) -> None:
        if not self._mark_ended(holder, reason, "lost"):
            return
        log.warning("leadership lost: election=%s token=%d: %s",
                    holder.election, holder.leadership.token, reason)
        task = self._release(holder, reuse=False)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._on_change("lost", holder)

    def _release(self, holder: Holder, *, reuse: bool) -> asyncio.Task[None]:
        """The one task releasing ``holder``'s client: every caller awaits the same
        release (two concurrent closes of one client must not race inside its store).
        ``reuse``: resign, then give the client back to the pool -- unless the core
        reported the leadership lost, then (as with ``reuse`` False) close it."""
        if holder.closing is None:
            holder.closing = asyncio.ensure_future(self._give_back(holder, reuse))
        return holder.closing

    async def _give_back(self, holder: Holder, reuse: bool) -> None:
        """Resigns, then pools or closes the client -- once no handoff of this holder
        still runs on it (the handoff follows the election there, and with ``keep``
        may campaign and win again: that leadership is resigned here too)."""
        while reuse:
            try:
                await holder.leadership.resign()
            except Exception as exc:
                log.warning("resigning a caller's leadership failed: %s", exc)
                reuse = False
            if not holder.handoffs:
                break
            await holder.handoffs_done.wait()
        if reuse and not holder.leadership.lost:
            await self.pool.give_back(holder.client)
        else:
            await self.pool.discard(holder.client)

    async def _reap(self) -> None:
        """Ends handle-mode holders whose keepalive lapsed, and forgets old tombstones."""
        while True:
            now = time.monotonic()
            due = [h for h in self._held.values()
                   if h.mode == "handle" and h.keepalive_until <= now]
            for holder in due:
                await self.end(holder, f"no keepalive within {holder.ttl:g} s", "lost")
            self._forget_old_tombstones()
            self.reaper_rounds += 1
            upcoming = [h.keepalive_until for h in self._held.values() if h.mode == "handle"]
            self._reaper_due = min(upcoming) if upcoming else None
            wait = (None if self._reaper_due is None
                    else max(0.0, self._reaper_due - time.monotonic()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
