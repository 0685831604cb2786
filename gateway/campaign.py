"""The one campaign loop and the one observe loop, over :mod:`tenure.store` steps.

Every backend runs exactly this code to wait for its turn, so the behaviour the
contract promises is the same everywhere by construction:

* ``timeout=0`` makes exactly one :meth:`~tenure.store.Store.try_lead` step and then
  either wins or raises CampaignTimeout without waiting; ``timeout=None`` waits forever.
* A wait ends when the adapter's :class:`~tenure.store.Signal` fires, at the Wait's
  ``retry_at``, on cancel, or at the deadline. A cancel wakes an interruptible signal
  (:mod:`tenure.cancel`); one that cannot be woken is checked every ``WAIT_SLICE``.
  When the deadline passes while waiting, one final :meth:`try_lead` decides (a
  change that landed just before the deadline still wins).
* A store that cannot be reached is retried with exponential back-off (tenacity) until
  the timeout or cancel: a waiting entry keeps its place and is stepped again. A failed
  campaign withdraws its entry; a withdrawal that fails is retried by the keeper after
  each successful renewal. (An enqueue whose answer was lost left no ticket: cleaning
  up after it is the adapter's -- etcd deletes a key of an earlier attempt, ZooKeeper
  sweeps orphan nodes, Consul withdraws after the next renewal.)
* An entry that died (SessionExpired from ``try_lead``) is queued again; a refused
  enqueue means the session is gone, and the keeper opens a new one.

What it does not do: promise arrival order where the store has none
(``StoreLimits.arrival_order``), or notice a change faster than the adapter's signal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_base,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from tenure.cancel import AnyOf, Cancel
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    SessionExpired,
    StoreUnavailable,
    TenureError,
)
from tenure.session import SessionKeeper
from tenure.store import WAIT_SLICE, LeaderInfo, Store, Ticket, Wait, Won

log = logging.getLogger("tenure")

R = TypeVar("R")

RETRY_FIRST = 0.05
RETRY_MAX = 1.0
"""Back-off bounds (seconds) of a campaign or observer retrying an unavailable store."""


def _transient(exc: BaseException) -> bool:
    """A store error worth stepping the same entry again for (not a dead entry)."""
    return isinstance(exc, StoreUnavailable) and not isinstance(exc, SessionExpired)


def _unavailable(exc: BaseException) -> bool:
    """Any store error, a dead entry included: :meth:`Campaign.run` queues again."""
    return isinstance(exc, StoreUnavailable)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


LONG_WAIT = 60.0
"""Longest single wait on a signal the cancel interrupts (a bound, not a poll)."""


def wait_for(step: Wait, deadline: float | None, cancelled: Cancel) -> bool:
    """Waits on ``step`` until its signal fires (True), or its ``retry_at``, the
    ``deadline`` or ``cancelled`` comes first (False; True if a cancel interrupted
    the signal -- the caller checks ``cancelled`` either way).

    When the signal is interruptible and every event of ``cancelled`` can wake it
    (:class:`tenure.cancel.AnyOf` of Flags), the wait lasts until one of those, with
    no wake-up in between; otherwise ``cancelled`` is checked every ``WAIT_SLICE``."""
    ends = [t for t in (step.retry_at, deadline) if t is not None]
    until = min(ends) if ends else None
    signal = step.signal
    unregister = None
    slice_ = WAIT_SLICE
    if signal.interruptible and isinstance(cancelled, AnyOf) and cancelled.wakeable:
        unregister = cancelled.add_waker(signal.interrupt)
        slice_ = LONG_WAIT
    try:
        while not cancelled.is_set():
            remaining = slice_ if until is None else until - time.monotonic()
            if remaining <= 0:
                return False
            if signal.wait(min(slice_, remaining)):
                return True
        return False
    finally:
        if unregister is not None:
            unregister()


class Campaign:
    """One campaign of one candidate: enqueue, then step and wait until it leads.

    :meth:`run` returns the winning ticket, its token and the session generation it
    was won on; it raises CampaignTimeout or CampaignCancelled (the entry withdrawn).
    """

    def __init__(
        self, store: Store[Any], keeper: SessionKeeper, election: str, candidate_id: str,
        value: bytes, timeout: float | None, cancelled: Cancel,
        closed: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.keeper = keeper
        self.election = election
        self.candidate_id = candidate_id
        self.value = value
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.cancelled = cancelled
        self.closed = closed
        """The client's close event (also part of ``cancelled``): names the cause."""
        self.last_error: StoreUnavailable | None = None
        self.describe_leader: Callable[[], str] = lambda: "unknown"
        self.admits: Callable[[Store[Any], Ticket, Won], bool] | None = None
        """Called once the store let a ticket win: False makes it step aside (withdrawn
        and queued again, never reported won) -- :class:`tenure.handoff.HandoffGate`.
        While set, each ticket asks the adapter to read the handoff marker with its
        winning step (``Ticket.read_on_win``); a retried call gets a Won without that
        read, so the gate reads afresh."""
        self.stepped_aside = 0
        self.priority: int | None = None
        """Declared priority, carried by a second entry (:mod:`tenure.priority`)."""

    def run(self) -> tuple[Ticket, int, int]:
        """Campaigns until won (see the module docstring)."""
        try:
            return self._once_then_retrying(self._attempt, retry=_unavailable)
        except StoreUnavailable as exc:
            self.last_error = exc
            raise self._gave_up() from None

    def _retrying(self, retry: retry_base) -> Retrying:
        return Retrying(
            retry=retry,
            wait=(wait_exponential(multiplier=RETRY_FIRST, max=RETRY_MAX)
                  + wait_random(0, RETRY_FIRST)),
            stop=self._should_stop,
            sleep=self._pause,
            before_sleep=self._note_retry,
            reraise=True,
        )

    def _attempt(self) -> tuple[Ticket, int, int]:
        """One enqueue and the wait for its turn; re-queues an entry that died."""
        while True:
            self._check_cancelled()
            generation = 0
            companion = None
            enqueuing = False
            try:
                generation = self.keeper.ensure_open()
                enqueuing = True
                if self.priority is not None:
                    from tenure.priority import add_priority

                    companion = add_priority(self.store, self.election, self.candidate_id,
                                             self.priority)
                ticket = self.store.enqueue(self.election, self.candidate_id, self.value)
                enqueuing = False
                if self.admits is not None:
                    from tenure.handoff import marker_key

                    ticket.read_on_win = marker_key(self.election)
            except SessionExpired as exc:
                self.keeper.expired(generation, str(exc))
                if companion is not None:
                    withdraw_quietly(self.store, companion, self.keeper)
                raise
            except BaseException as exc:
                if enqueuing and isinstance(exc, StoreUnavailable):
                    # The entry may have committed unheard: no ticket withdraws it, and
                    # the session keeps it alive -- so that session is never idle again.
                    self.keeper.unheard(generation)
                if companion is not None:
                    withdraw_quietly(self.store, companion, self.keeper)
                raise
            try:
                if companion is not None:
                    from tenure.priority import ring

                    with _companions_lock:
                        _companions[ticket] = companion
                    ring(self.store, self.election, self.candidate_id, self.keeper)
                won = self._await_turn(ticket)
                if self.admits is not None and not self._once_then_retrying(
                        self._admit, ticket, won, [won]):
                    self._withdraw(ticket)
                    self.stepped_aside += 1
                    continue
            except SessionExpired as exc:
                # The entry died (with its session, or removed by an operator): queue
                # again. Only a refused enqueue proves the session itself is gone.
                self._withdraw(ticket)
                self.last_error = exc
                continue
            except BaseException:
                self._withdraw(ticket)
                raise
            return ticket, won.token, generation

    def _admit(self, ticket: Ticket, won: Won, fresh: list[Won]) -> bool:
        """:attr:`admits`, given the winning step's read the first time only (``fresh``
        is emptied): a retry after a store error reads the marker again."""
        assert self.admits is not None
        return self.admits(self.store, ticket, fresh.pop() if fresh else Won(won.token))

    def _once_then_retrying(self, call: Callable[..., R], *args: Any,
                            retry: Callable[[BaseException], bool] = _transient) -> R:
        """``call(*args)``; after a store error that ``retry`` accepts, the back-off of
        :meth:`_retrying` goes on as if that call had been its first attempt (the next
        call comes after the first pause). The common case -- no error -- costs no
        tenacity machinery (~25 us of CPU per call, on the handover path)."""
        try:
            return call(*args)
        except StoreUnavailable as exc:
            if not retry(exc):
                raise
            first: list[BaseException] = [exc]

        def again(*arguments: Any) -> R:
            if first:
                raise first.pop()
            return call(*arguments)

        result: R = self._retrying(retry_if_exception(retry))(again, *args)
        return result

    def _await_turn(self, ticket: Ticket) -> Won:
        # A store error while waiting keeps the entry (and its place in the queue): the
        # same ticket is stepped again with back-off. Only a dead entry is re-queued.
        while True:
            step = self._once_then_retrying(self.store.try_lead, ticket)
            if isinstance(step, Won):
                ticket.won = True
                return step
            with step.signal:
                if _expired(self.deadline):
                    raise self._gave_up()
                fired = wait_for(step, self.deadline, self.cancelled)
            self._check_cancelled()
            if not fired and _expired(self.deadline):
                final = self.store.try_lead(ticket)
                if isinstance(final, Won):
                    ticket.won = True
                    return final
                final.signal.close()
                raise self._gave_up()

    def _withdraw(self, ticket: Ticket) -> None:
        withdraw_quietly(self.store, ticket, self.keeper)

    def _check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise self._cancelled()

    def _cancelled(self) -> CampaignCancelled:
        if self.closed is not None and self.closed.is_set():
            return CampaignCancelled(
                f"campaign in election {self.election!r} ended: its client was closed")
        return CampaignCancelled(f"campaign in election {self.election!r} was cancelled")

    def _should_stop(self, state: RetryCallState) -> bool:
        return self.cancelled.is_set() or _expired(self.deadline)

    def _pause(self, seconds: float) -> None:
        pause = seconds if self.deadline is None else min(
            seconds, max(0.0, self.deadline - time.monotonic()))
        self.cancelled.wait(pause)

    def _note_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, StoreUnavailable):
            self.last_error = exc
        log.warning("campaign in %s: %s (retrying)", self.election, exc)

    def _gave_up(self) -> CampaignTimeout | CampaignCancelled:
        if self.cancelled.is_set():
            return self._cancelled()
        store_note = f"; last store error: {self.last_error}" if self.last_error else ""
        return CampaignTimeout(
            f"campaign in election {self.election!r} did not win within {self.timeout:g} s "
            f"(leader: {self.describe_leader()}{store_note}); retry or raise the timeout"
        )


def observe(
    store: Store[Any], election: str, stop: Cancel, end: float | None
) -> Iterator[LeaderInfo | None]:
    """The current leader, then each change, in token order, until ``stop`` or ``end``.

    Each round is one :meth:`~tenure.store.Store.observe_step` (a linearizable read
    with a signal armed before it), so after an outage or reconnect the latest state
    is read again and never missed; leaders that came and went in between may be."""
    known: LeaderInfo | None = None
    first = True
    backoff = RETRY_FIRST
    while not stop.is_set() and not _expired(end):
        try:
            current, step = store.observe_step(election)
        except StoreUnavailable as exc:
            log.warning("observe %s: store unavailable (retrying): %s", election, exc)
            stop.wait(backoff if end is None else min(backoff, max(0.0, end - time.monotonic())))
            backoff = min(RETRY_MAX, backoff * 2)
            continue
        backoff = RETRY_FIRST
        with step.signal:
            stale = current is not None and known is not None and current.token < known.token
            if (first or current != known) and not stale:
                first = False
                known = current
                yield current
            wait_for(step, end, stop)


_companions: dict[Ticket, Ticket] = {}
"""Priority entries (:mod:`tenure.priority`) by the entry they belong to."""
_companions_lock = threading.Lock()


def withdraw_quietly(
    store: Store[Any], ticket: Ticket, keeper: SessionKeeper | None = None
) -> None:
    """Withdraws ``ticket`` (and its priority entry, if any). On a store error the
    keeper retries after its next successful renewal (an entry left behind would
    otherwise live as long as the session); without a keeper it is logged and
    expires with the session."""
    with _companions_lock:
        companion = _companions.pop(ticket, None)
    if companion is not None:
        withdraw_quietly(store, companion, keeper)
    ticket.withdrawn = True
    try:
        store.withdraw(ticket)
    except TenureError as exc:
        log.warning("could not withdraw %s from %s (will retry): %s",
                    ticket.key, store.description, exc)
        if keeper is not None:
            keeper.withdraw_later(ticket)
