"""Leaderships the gateway holds on behalf of HTTP callers, each tied to the caller's
liveness.

    holders = Holders(backend_url, default_ttl=10)
    holder = await holders.campaign("jobs/a", owner=None, mode="handle", ...)
    holders.keepalive(holder)            # within holder.ttl, or the reaper resigns it

Each campaign gets its OWN :class:`tenure.aio.Client`, so its own store session: two
callers can campaign in one election through one gateway, ending one caller's
leadership (resign, or close the session) never touches another's, and if the gateway
itself dies every session it held expires within its TTL. A holder in ``handle`` mode
is resigned by the reaper once ``ttl`` seconds pass without a keepalive; in ``stream``
mode, as soon as the streaming response closes. Either way the gateway's own validity
deadline (the core's) still applies: a loss ends the holder and is reported to the
caller (410 on the next call, a ``lost`` event on the stream).

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
from collections.abc import Callable
from dataclasses import dataclass, field

from tenure import aio
from tenure.errors import TenureError

log = logging.getLogger("tenure.http")

MODES = ("handle", "stream")


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
    ) -> None:
        self.backend_url = backend_url
        self.default_ttl = default_ttl
        self.max_campaigns = max_campaigns
        self.config_file = config_file
        self._on_change = on_change or (lambda kind, holder: None)
        self._held: dict[str, Holder] = {}
        self._pending = 0
        self._wake = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def campaigning(self) -> int:
        """Campaigns still waiting to win."""
        return self._pending

    def start(self) -> None:
        """Starts the reaper (call inside the running loop)."""
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap())

    async def campaign(
        self, election: str, *, owner: str | None, mode: str, candidate_id: str | None,
        value: bytes, timeout: float | None, ttl: float | None,
    ) -> Holder:
        """Campaigns with a fresh client (own session) and returns the held leadership.
        Raises the core's errors; cancelling the awaiting task (the HTTP caller went
        away) removes the queue entry, or resigns if it had just won."""
        if len(self._held) + self._pending >= self.max_campaigns:
            raise TooManyCampaigns(
                f"this gateway already holds {self.max_campaigns} campaigns (--max-campaigns)"
            )
        self._pending += 1
        try:
            client = await aio.connect(
                self.backend_url, ttl=ttl or self.default_ttl, candidate_id=candidate_id,
                config_file=self.config_file,
            )
            try:
                lead = await client.election(election).campaign(value, timeout=timeout)
            except BaseException:
                await asyncio.shield(client.close())
                raise
        finally:
            self._pending -= 1
        holder = Holder(
            handle=secrets.token_urlsafe(32), owner=owner, mode=mode, ttl=client.ttl,
            client=client, leadership=lead, keepalive_until=time.monotonic() + client.ttl,
        )
        lead.on_lost(lambda _lead, reason: self._lost(holder, reason))
        self._held[holder.handle] = holder
        self._wake.set()
        self._on_change("won", holder)
        if lead.lost:
            self._lost(holder, lead.lost_reason)
        return holder

    def get(self, handle: str, owner: str | None) -> Holder:
        """The holder with ``handle`` created by ``owner``; UnknownHandle otherwise
        (the same answer for a wrong owner, so handles cannot be probed)."""
        holder = self._held.get(handle)
        if holder is None or holder.owner != owner:
            raise UnknownHandle(handle)
        return holder

    def keepalive(self, holder: Holder) -> None:
        """Extends a handle-mode holder's keepalive deadline to now + ttl."""
        if not holder.ended.is_set():
            holder.keepalive_until = time.monotonic() + holder.ttl
            self._wake.set()

    async def end(self, holder: Holder, reason: str) -> None:
        """Resigns (if still held) and ends the holder's session; idempotent."""
        self._held.pop(holder.handle, None)
        first = not holder.ended.is_set()
        if first:
            holder.end_reason = reason
            holder.ended.set()
        await asyncio.shield(self._close_client(holder))
        if first:
            self._on_change("ended", holder)

    async def close(self) -> None:
        """Resigns every holder and stops the reaper."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(self.end(h, "the gateway is shutting down")
                               for h in list(self._held.values())))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _lost(self, holder: Holder, reason: str) -> None:
        if holder.ended.is_set():
            return
        holder.end_reason = reason
        holder.ended.set()
        log.warning("leadership lost: election=%s token=%d: %s",
                    holder.election, holder.leadership.token, reason)
        # Keep the handle until its keepalive lapses so its owner learns why (410).
        task = asyncio.ensure_future(self._close_client(holder))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._on_change("lost", holder)

    async def _close_client(self, holder: Holder) -> None:
        try:
            await holder.client.close()
        except TenureError as exc:
            log.warning("closing a caller's session failed (it expires by itself): %s", exc)

    async def _reap(self) -> None:
        """Ends handle-mode holders whose keepalive lapsed, and forgets lost ones."""
        while True:
            now = time.monotonic()
            due = [h for h in self._held.values()
                   if (h.mode == "handle" or h.ended.is_set()) and h.keepalive_until <= now]
            for holder in due:
                await self.end(holder, f"no keepalive within {holder.ttl:g} s")
            upcoming = [h.keepalive_until for h in self._held.values()
                        if h.mode == "handle" or h.ended.is_set()]
            wait = max(0.0, min(upcoming) - time.monotonic()) if upcoming else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
