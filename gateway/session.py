"""The session keeper: renews a client's one store session and ends leaderships at
their validity deadline.

Clock reasoning. All times are ``time.monotonic()`` of this host. A renewal *sent* at
``t_sent`` that succeeds proves the store keeps the session (and every entry bound to
it) alive until at least ``t_sent + lifetime`` on the store's side, where ``lifetime``
is what the adapter says the store guarantees (``Store.open_session``: the TTL, or less
where a store stretches what it is sent, as Consul doubles it). We therefore consider
ourselves valid only until ``t_sent + lifetime * (1 - drift)``: ``drift`` absorbs the
difference in clock *rate* between this host and the store's (it does not absorb clock
steps or unbounded skew rates -- nothing can). The send time is used, never the reply
time, so a slow reply never lengthens validity. A leadership whose deadline has passed
is lost for good, even if a later renewal succeeds: the store may have expired it and
elected someone else in between. Where the store says a renewal proves only the previous
one's send time (``Store.proof_lags_one_renewal``: a ZooKeeper follower relays its touch
to the ensemble's leader later), a renewal's deadline counts from the send time of the
previous successful renewal of the session, or of ``open_session``'s request for the
first, and the deadline after ``open_session`` from its own send time.

Two threads per client: the *renewer* does store I/O (renew every ``lifetime / 3``, or
``lifetime * Store.unheld_renewal_share`` while nothing is held; retry quickly on
failure); the *watchdog* does no I/O and fires losses when the deadline passes, so a
renewal that hangs in the network cannot delay the loss.

Wake-ups (each costs CPU on an idle host, and a thread hand-off on a hot path): the
watchdog sleeps without a timer while nothing is held, and is not woken by renewals
(they only move the deadline later). A ticket adopted while the renewer sleeps before
the deadline is handed to the renewer, which wakes the watchdog first thing when it
wakes (before any I/O); otherwise the adopting thread wakes it. The renewer wakes only
to renew.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tenure import events
from tenure.errors import SessionExpired, TenureError
from tenure.store import Store, Ticket

log = logging.getLogger("tenure.session")

LossHandler = Callable[[Ticket, str], None]


class SessionKeeper:
    """Owns the store session of one client: opens it lazily, renews it, and calls
    ``on_loss(ticket, reason)`` once for each held ticket that stops being valid."""

    def __init__(self, store: Store[Any], ttl: float, drift: float, on_loss: LossHandler) -> None:
        self.store = store
        self.ttl = ttl
        self.drift = drift
        self._on_loss = on_loss
        self._mutex = threading.RLock()
        self._lock = threading.Condition(self._mutex)
        """Guards the state; the renewer waits on it (woken by close)."""
        self._watch_wake = threading.Condition(self._mutex)
        """The watchdog waits on this: woken when it has a deadline to keep that it may
        not be timing (a ticket adopted while it slept with nothing held, the session
        ended, close) -- never by a renewal, which only moves the deadline later (the
        watchdog re-reads it when its timer ends)."""
        self._renewer_waits_until: float | None = None
        """While the renewer sleeps without I/O in flight: when it wakes (else None)."""
        self._watch_stale = False
        """A ticket was adopted and the watchdog not woken: the renewer wakes it."""
        self._opening = threading.Lock()
        self._held: set[Ticket] = set()
        self._leftovers: set[Ticket] = set()
        self._sweeper: threading.Thread | None = None
        self._open = False
        self._closed = False
        self._valid_until = 0.0
        self._proof_sent = 0.0
        """Send time of the last successful renewal or open of the current session."""
        self._generation = 0
        self._unheard: int | None = None
        self._last_error: str = ""
        self._renewer: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self.lifetime = ttl
        """Seconds each successful renewal guarantees, from its send time (the store's word)."""
        self.renewals = 0
        self.renewal_failures = 0

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals: a third of the guaranteed lifetime."""
        return self.lifetime / 3

    def _next_renewal(self) -> float:
        """Seconds from a successful renewal to the next: :attr:`renew_interval`, or
        ``lifetime * Store.unheld_renewal_share`` (at most ``(1 - drift) / 2``, so that
        :meth:`idle` holds until the next renewal) while nothing is held where the store
        sets that share (a waiter's session bounds no validity). Called under the lock."""
        share = self.store.unheld_renewal_share
        if share is None or self._held or self.store.proof_lags_one_renewal:
            return self.renew_interval
        return self.lifetime * max(1 / 3, min(share, (1 - self.drift) / 2))

    @property
    def valid_until(self) -> float:
        """Monotonic time until which the session is known alive (with drift margin)."""
        with self._lock:
            return self._valid_until

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        with self._lock:
            return self._closed

    @property
    def generation(self) -> int:
        """Incremented each time a new session replaces an expired one."""
        with self._lock:
            return self._generation

    def ensure_open(self) -> int:
        """Opens the session if needed (blocking) and returns its generation. Callers
        racing here (the renewer and campaigns after an expiry) open ONE session."""
        with self._opening:
            return self._open_once()

    def _open_once(self) -> int:
        with self._lock:
            if self._closed:
                raise TenureError("this tenure client is closed; connect() a new one")
            if self._open:
                return self._generation
        t_sent = time.monotonic()
        lifetime = self.store.open_session(self.ttl)
        with self._lock:
            self.lifetime = lifetime
            self._open = True
            self._generation += 1
            self._valid_until = t_sent + lifetime * (1 - self.drift)
            self._proof_sent = t_sent
            self._lock.notify_all()
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="tenure-renewer", daemon=True
                )
                self._watchdog = threading.Thread(
                    target=self._watch_loop, name="tenure-watchdog", daemon=True
                )
                self._renewer.start()
                self._watchdog.start()
            return self._generation

    def expired(self, generation: int, detail: str) -> None:
        """Records that the store ended session ``generation`` (seen by a campaign), so
        the next :meth:`ensure_open` opens a new one. A no-op for an older session."""
        with self._lock:
            current = self._open and generation == self._generation
        if current:
            self._session_expired(detail)

    def adopt(self, ticket: Ticket, generation: int) -> float | None:
        """Starts guarding a ticket that just won; returns its validity deadline, or
        None if the session it was won on is already past its deadline or replaced."""
        with self._lock:
            if generation != self._generation or time.monotonic() >= self._valid_until:
                return None
            self._held.add(ticket)
            wakes = self._renewer_waits_until
            if wakes is not None and wakes < self._valid_until:
                # Not on the winner's path: waking the watchdog costs the winning thread
                # a thread hand-off (~50-150 us on a loaded host). The renewer wakes
                # before this deadline, does no I/O before waking the watchdog, and is
                # told to; a renewer busy with I/O (which may hang) is not relied upon.
                self._watch_stale = True
            else:
                self._watch_wake.notify_all()
            return self._valid_until

    def withdraw_later(self, ticket: Ticket) -> None:
        """Remembers an entry whose withdrawal failed: it is withdrawn again after each
        successful renewal until that works (while the session lives, the store would
        otherwise keep it -- a leader key nobody uses). It dies with the session."""
        with self._lock:
            if self._open:
                self._leftovers.add(ticket)

    def _sweep_leftovers(self) -> None:
        with self._lock:
            leftovers = set(self._leftovers)
        for ticket in leftovers:
            try:
                self.store.withdraw(ticket)
            except TenureError as exc:
                log.warning("withdrawing %s failed again (will retry): %s", ticket.key, exc)
                continue
            with self._lock:
                self._leftovers.discard(ticket)

    def _start_sweep(self) -> None:
        with self._lock:
            if not self._leftovers or (self._sweeper is not None and self._sweeper.is_alive()):
                return
            self._sweeper = threading.Thread(
                target=self._sweep_leftovers, name="tenure-withdraw-retry", daemon=True)
            self._sweeper.start()

    def unheard(self, generation: int) -> None:
        """Records that an enqueue on session ``generation`` got no answer (it raised
        StoreUnavailable): the store may hold an entry nobody has a ticket for, kept
        alive by every renewal of that session. Such a session is never :meth:`idle`
        again; the entry ends with it (closed, or replaced after an expiry)."""
        with self._lock:
            if generation == self._generation:
                self._unheard = generation

    def idle(self) -> bool:
        """True while the session is open with at least half of what one renewal grants
        (``lifetime * (1 - drift) / 2``) still ahead, guards no ticket, has no entry
        whose withdrawal must be retried and never had an enqueue go unanswered
        (:meth:`unheard`): it can serve a new campaign as a fresh one would (``tenure
        serve`` reuses such clients). Says nothing about the next renewal; with a
        drift above about 1/3 the margin is not met just before a punctual renewal."""
        with self._lock:
            ahead = self._valid_until - time.monotonic()
            return (self._open and not self._closed and not self._held
                    and not self._leftovers and self._unheard != self._generation
                    and ahead >= self.lifetime * (1 - self.drift) / 2)

    def release(self, ticket: Ticket) -> None:
        """Stops guarding a ticket (it was resigned or already reported lost)."""
        with self._lock:
            self._held.discard(ticket)

    def close(self) -> None:
        """Stops both threads and ends the session in the store (best effort)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            was_open = self._open
            self._open = False
            self._held.clear()
            self._lock.notify_all()
            self._watch_wake.notify_all()
        for thread in (self._renewer, self._watchdog):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=self.ttl)
        if was_open:
            try:
                self.store.close_session()
            except TenureError as exc:
                log.warning("closing the session failed (it will expire by itself): %s", exc)

    def _lose(self, tickets: set[Ticket], reason: str) -> None:
        for ticket in tickets:
            self._on_loss(ticket, reason)

    def _renew_loop(self) -> None:
        next_at = time.monotonic() + self.renew_interval
        while True:
            with self._lock:
                self._renewer_waits_until = next_at
                while not self._closed and time.monotonic() < next_at:
                    self._lock.wait(max(0.0, next_at - time.monotonic()))
                self._renewer_waits_until = None
                if self._watch_stale:
                    self._watch_stale = False
                    self._watch_wake.notify_all()
                if self._closed:
                    return
                held = frozenset(self._held)
                open_ = self._open
            if not open_:
                next_at = self._reopen()
                continue
            t_sent = time.monotonic()
            try:
                self.store.renew_session(held)
            except SessionExpired as exc:
                events.publish("renewal", backend=self.store.description, ok=False,
                               latency=time.monotonic() - t_sent, error=str(exc))
                self._session_expired(str(exc))
                next_at = time.monotonic()
                continue
            except Exception as exc:
                self.renewal_failures += 1
                self._last_error = str(exc)
                events.publish("renewal", backend=self.store.description, ok=False,
                               latency=time.monotonic() - t_sent, error=str(exc))
                log.warning("session renewal failed (will retry): %s", exc)
                next_at = time.monotonic() + min(self.renew_interval, max(0.05, self.ttl / 10))
                continue
            self.renewals += 1
            with self._lock:
                overdue = set(self._held) if time.monotonic() >= self._valid_until else set()
                self._held -= overdue
                proof = t_sent
                if self.store.proof_lags_one_renewal:
                    # min: a session opened while this renewal was in flight.
                    proof = min(self._proof_sent, t_sent)
                self._proof_sent = max(self._proof_sent, t_sent)
                self._valid_until = proof + self.lifetime * (1 - self.drift)
                valid_until = self._valid_until
                interval = self._next_renewal()
            # Published after the new deadline is in force, and carrying it, so a
            # subscriber (metrics, a deadline keeper) can forward it at once.
            events.publish("renewal", backend=self.store.description, ok=True,
                           latency=time.monotonic() - t_sent, error="",
                           valid_until=valid_until)
            if overdue:
                self._lose(overdue, self.deadline_reason())
            self._start_sweep()
            next_at = t_sent + interval

    def _session_expired(self, detail: str) -> None:
        with self._lock:
            held = set(self._held)
            self._held.clear()
            self._leftovers.clear()
            self._open = False
            self._valid_until = 0.0
            self._watch_wake.notify_all()
        log.warning("session expired: %s", detail)
        events.publish("session_expired", backend=self.store.description, detail=detail)
        self._lose(held, f"the store ended this client's session ({detail})")

    def _reopen(self) -> float:
        try:
            self.ensure_open()
        except Exception as exc:
            log.warning("could not open a new session (will retry): %s", exc)
            return time.monotonic() + min(1.0, self.renew_interval)
        return time.monotonic() + self.renew_interval

    def deadline_reason(self) -> str:
        """Why a leadership ended at its deadline, with the last renewal error."""
        reason = f"validity deadline passed (no successful renewal within {self.ttl:g} s TTL"
        if self._last_error:
            reason += f"; last error: {self._last_error}"
        return reason + ")"

    def _watch_loop(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                if self._held and now >= self._valid_until:
                    overdue = set(self._held)
                    self._held.clear()
                    reason = self.deadline_reason()
                    self._lock.release()
                    try:
                        self._lose(overdue, reason)
                    finally:
                        self._lock.acquire()
                    continue
                timeout = self._valid_until - now if self._held else None
                self._watch_wake.wait(timeout)
