"""Preferred candidates: a priority per candidate, visible to every other one, and the
leader told when a higher-priority candidate is waiting.

    lead = election.campaign(priority=1, on_preferred=lambda lead, c: log.info("%s", c))
    ...
    if lead.preferred.is_set():           # at a safe point the leader chooses
        lead.yield_to_preferred()          # a handoff to the highest-priority waiter

How the priority travels, the same on every backend, through the store interface only:
a candidate that declares a priority adds, just BEFORE its entry, a second entry of the
SAME session in the side election ``.tenure-priority/<election>`` whose value is the
priority (``{"priority": N}``). It lives and dies with the session like the entry
itself, and the core withdraws it with the entry. :meth:`Election.contenders` joins the
two lists by candidate id (:func:`with_priorities`). Why not a field of the entry: that
would change the on-store format of every adapter (and the SQL schema of two), and the
native layouts shared with etcdctl, kazoo and Curator have no place for it; the second
entry needs no adapter change, so ``StoreLimits.entry_priority`` is True everywhere.

How the leader is told: a candidate that joins with a priority also rings a *bell* --
an entry enqueued and withdrawn at once in ``.tenure-priority-bell/<election>`` (the
store signals the change to every observer of that side election). While it leads, a
leadership with ``on_preferred`` callbacks (or in a run loop with ``prefer_priority``)
keeps ONE :class:`PreferenceWatch`: it waits on that side election's observe signal
(and re-reads at least every ``RECHECK`` seconds, for a ring it may have missed), then
reads the contenders and compares priorities. A higher-priority live waiter sets
``leadership.preferred``, calls each ``on_preferred(leadership, contender)`` once per
candidate, and publishes the ``preferred_candidate`` event.

What it does NOT do: pre-empt the leader. Handing over is the leader's choice, at a
point it picks (:meth:`Leadership.yield_to_preferred`, or a run loop with
``prefer_priority=True`` when its work returns); the default stays first come, first
served. Two reads (entries, priorities) are not one snapshot: a candidate that joins
between them is seen at the next check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tenure import events
from tenure.campaign import wait_for, withdraw_quietly
from tenure.errors import ConfigError, StoreUnavailable, TenureError
from tenure.handoff import side_name
from tenure.store import Contender, Store, Ticket, Wait

if TYPE_CHECKING:
    from tenure.leadership import Leadership
    from tenure.session import SessionKeeper

log = logging.getLogger("tenure")

PRIORITY_SEGMENT = ".tenure-priority"
BELL_SEGMENT = ".tenure-priority-bell"
RECHECK = 5.0
"""Longest time (seconds) a watching leader goes without re-reading the contenders."""
MAX_PRIORITY = 1_000_000

PreferredCallback = Callable[["Leadership", Contender], None]


def side_election(election: str, segment: str) -> str:
    """The side election ``segment`` of ``election`` (:func:`tenure.handoff.side_name`)."""
    return side_name(segment, election)


def check_priority(priority: object) -> int | None:
    """A priority: None (not declared, counts as 0) or a whole number in
    [-MAX_PRIORITY, MAX_PRIORITY]; higher is preferred."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
            -MAX_PRIORITY <= priority <= MAX_PRIORITY):
        raise ConfigError(f"priority {priority!r} must be a whole number from "
                          f"-{MAX_PRIORITY} to {MAX_PRIORITY} (higher is preferred)")
    return priority


def add_priority(store: Store[Any], election: str, candidate_id: str, priority: int) -> Ticket:
    """Adds the priority entry of ``candidate_id`` (BEFORE its entry: whoever lists the
    entry then finds its priority); the core withdraws it with the entry."""
    value = json.dumps({"priority": priority}).encode()
    companion: Ticket = store.enqueue(side_election(election, PRIORITY_SEGMENT),
                                      candidate_id, value)
    return companion


def ring(store: Store[Any], election: str, candidate_id: str,
         keeper: SessionKeeper | None = None) -> None:
    """Rings the bell (AFTER the entry exists): watching leaders re-read the contenders.
    A bell whose withdrawal fails is withdrawn again by ``keeper`` after its next
    renewal (as the core does with any entry); one whose enqueue went unanswered is
    recorded with ``keeper`` as possibly left behind (:meth:`SessionKeeper.unheard`)."""
    try:
        bell = store.enqueue(side_election(election, BELL_SEGMENT), candidate_id, b"")
    except TenureError as exc:  # the watchers' periodic re-check finds it later
        if keeper is not None and isinstance(exc, StoreUnavailable):
            keeper.unheard(keeper.generation)
        log.info("priority bell in %s not rung: %s", election, exc)
        return
    withdraw_quietly(store, bell, keeper)


def _priority_of(raw: bytes) -> int:
    try:
        value = json.loads(raw)["priority"]
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
    except (ValueError, TypeError, KeyError):
        return 0


def with_priorities(store: Store[Any], election: str) -> list[Contender]:
    """The election's contenders with the priority each declared (0 when none)."""
    listed = store.contenders(election)
    declared = {c.candidate_id: _priority_of(c.value)
                for c in store.contenders(side_election(election, PRIORITY_SEGMENT))}
    return [Contender(c.candidate_id, c.value, c.order, declared.get(c.candidate_id, 0))
            for c in listed]


def best_waiter(contenders: list[Contender], leader_id: str,
                leader_priority: int) -> Contender | None:
    """The waiting contender of the highest priority above ``leader_priority`` (the
    first in line among equals), or None."""
    better = [c for c in contenders
              if c.candidate_id != leader_id and c.priority > leader_priority]
    return max(better, key=lambda c: c.priority) if better else None


class PreferenceWatch:
    """Tells one leadership when a higher-priority candidate waits (module docstring).
    One daemon thread; ends with the leadership or :meth:`stop`."""

    def __init__(self, lead: Leadership, store: Store[Any], priority: int) -> None:
        self.lead = lead
        self.store = store
        self.priority = priority
        self.told: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenure-preference",
                                        daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stops watching; with ``wait``, returns once the thread ended (unless called
        from it). A leadership that ends does not wait: a loss must not be delayed by a
        store call in flight here (the thread ends within one wait slice after it)."""
        self._stop.set()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def check(self) -> Contender | None:
        """Reads the contenders once; tells the leadership about a better waiter."""
        best = best_waiter(with_priorities(self.store, self.lead.election),
                           self.lead.candidate_id, self.priority)
        if best is None:
            self.lead.preferred.clear()
            return None
        self.lead.preferred.set()
        if best.candidate_id not in self.told:
            self.told.add(best.candidate_id)
            log.info("election %s: preferred candidate %s (priority %d) waits; leader %s has "
                     "priority %d", self.lead.election, best.candidate_id, best.priority,
                     self.lead.candidate_id, self.priority)
            events.publish("preferred_candidate", election=self.lead.election,
                           candidate_id=best.candidate_id, priority=best.priority,
                           leader=self.lead.candidate_id, leader_priority=self.priority)
            self.lead.tell_preferred(best)
        return best

    def _run(self) -> None:
        bell = side_election(self.lead.election, BELL_SEGMENT)
        stop = self._stop
        ended = self.lead.ended
        while not stop.is_set() and not ended.is_set():
            try:
                _, step = self.store.observe_step(bell)
            except TenureError as exc:
                log.warning("preference watch in %s: %s (retrying)", self.lead.election, exc)
                stop.wait(1.0)
                continue
            with step.signal:
                try:
                    self.check()
                except TenureError as exc:
                    log.warning("preference watch in %s: %s", self.lead.election, exc)
                until = time.monotonic() + RECHECK
                while not stop.is_set() and not ended.is_set():
                    try:
                        woken = wait_for(Wait(step.signal, min(until, time.monotonic() + 0.2)),
                                         None, stop)
                    except TenureError as exc:  # the store's wake channel failed: re-observe
                        log.warning("preference watch in %s: %s", self.lead.election, exc)
                        break
                    if woken or time.monotonic() >= until:
                        break
