"""The narrow interface every backend implements: a handful of non-blocking store steps.

The election itself -- the wait-to-lead loop, timeouts (``timeout=0`` is exactly one
try), cancellation, back-off, the final re-check at the deadline, observe, validity
deadlines and the loss policy -- is written once, in :mod:`tenure.campaign`,
:mod:`tenure.leadership` and :mod:`tenure.session`. An adapter (one module per store in
:mod:`tenure.adapters`) only translates these steps to its store, the way client-go's
``resourcelock.Interface`` does for its one election loop. Every method is required;
what differs between stores (TTL range, partition safety, arrival order) is data in
:class:`StoreLimits`.

+-----------------------+------------------------------------------------------------+
| step                  | promise                                                    |
+=======================+============================================================+
| ``open_session(ttl)`` | creates the client's ONE liveness object; returns the      |
|                       | seconds each successful renewal keeps it alive, counted    |
|                       | from the renewal's SEND time (at most ``ttl``)             |
| ``renew_session(h)``  | one renewal for every held entry ``h``; SessionExpired if  |
|                       | the store ended the session (never revives it)             |
| ``enqueue``           | atomically adds an entry bound to the session, in arrival  |
|                       | order; returns the adapter's typed :class:`Ticket`         |
| ``try_lead(t)``       | one step: :class:`Won` (token) by a linearizable read or a |
|                       | conditional write, or :class:`Wait` with a :class:`Signal` |
|                       | armed BEFORE that read; SessionExpired if the entry died.  |
|                       | Optional: with ``t.read_on_win`` set, a Won also carries   |
|                       | that key's value read IN the deciding step (see below)     |
| ``observe_step(e)``   | the leader by a linearizable read, and a :class:`Wait`     |
|                       | armed before it, for its next change                       |
| ``proclaim``,         | conditional writes that commit only while ``t`` leads;     |
| ``guarded_write``     | NotLeader (nothing written) otherwise                      |
| ``withdraw``          | removes the entry; a no-op if it is gone                   |
| ``leader``,           | linearizable reads                                         |
| ``contenders``,       |                                                            |
| ``read``              |                                                            |
+-----------------------+------------------------------------------------------------+

Built on these steps in the core, with no adapter method of their own: planned
handoff (:mod:`tenure.handoff`: a marker written by ``guarded_write`` and read after
``try_lead`` won) and candidate priorities (:mod:`tenure.priority`: a second entry of
the session, enqueued in a side election).

Reading with the win (an optional capability). The core sets
:attr:`Ticket.read_on_win` to a guarded-write key (the handoff marker's) before it
steps a ticket. An adapter that can read that key IN the store step that decides Won --
the same transaction, script or pipelined request run -- returns
``Won(token, read=value, read_done=True)``, and the core then makes no separate
:meth:`Store.read`: one sequential round trip less per won campaign. The read must be
as linearizable as :meth:`Store.read` and ordered after everything that let the ticket
win (the previous leader's release, hence the marker it wrote before it); each adapter
says why its read is. An adapter that does not implement it returns a plain
``Won(token)`` (``read_done`` False) and the core reads the key separately, as before:
that default lives in one place, :meth:`tenure.handoff.HandoffGate.admits`.

Losses an adapter learns by itself (a watch saw its key deleted, the store reported
the session gone, a renewal reached too few instances) go through ONE channel: the
reporter the core installs with :meth:`Store.bind`. A refused conditional write is
raised as NotLeader; the core turns it into a loss.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from tenure.config import BackendURL

WAIT_SLICE = 0.2
"""Longest time the core waits on a :class:`Signal` without checking cancel, unless the
signal is :attr:`~Signal.interruptible` and the cancel wakes it (:mod:`tenure.cancel`)."""


@dataclass(frozen=True)
class LeaderInfo:
    """The current leader of an election as the store reports it."""

    election: str
    candidate_id: str
    value: bytes
    token: int

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form (value decoded as UTF-8 with replacement)."""
        return {
            "election": self.election,
            "candidate_id": self.candidate_id,
            "value": self.value.decode("utf-8", "replace"),
            "token": self.token,
        }


@dataclass(frozen=True)
class Contender:
    """One live candidate of an election, as :meth:`Store.contenders` lists it.

    ``order`` is its arrival position where the store has one (SQLite seq, etcd
    create revision, ZooKeeper sequence, Consul/Redis registration index), else 0;
    lists are sorted by it, the leader (if any) first where the store queues.
    ``priority`` is what the candidate declared (``campaign(priority=N)``; 0 when
    none). Adapters leave it 0: the core fills it in (:mod:`tenure.priority` carries
    it as a second entry of the same session, so no adapter stores it).
    """

    candidate_id: str
    value: bytes
    order: int = 0
    priority: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form (value decoded as UTF-8 with replacement)."""
        return {
            "candidate_id": self.candidate_id,
            "value": self.value.decode("utf-8", "replace"),
            "order": self.order,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class StoreLimits:
    """What a backend can do, as data rather than missing methods.

    ``min_ttl``/``max_ttl`` bound the session TTL in seconds; ``ttl_step`` is the
    granularity the store accepts (etcd: whole seconds), or None for any value.
    ``partition_safe`` is False when a network partition can produce two leaders
    (a single Redis instance); ``warning`` then says why. ``arrival_order`` is False
    where waiters are not served first come, first served (Kubernetes).
    """

    min_ttl: float
    max_ttl: float
    ttl_step: float | None = None
    partition_safe: bool = True
    warning: str = ""
    arrival_order: bool = True


@dataclass(eq=False)
class Ticket:
    """One candidate's entry in an election's queue, created by :meth:`Store.enqueue`.

    ``key`` is the store's identity of the entry (a key, node path or row id);
    ``order`` its position in arrival order where the store has one. ``won`` is set
    by the core when :meth:`Store.try_lead` returned :class:`Won` for it, and
    ``withdrawn`` when the core gave the entry back (adapters' watchers read both).
    Adapters subclass this dataclass with the typed fields they need.
    Tickets compare and hash by identity.
    """

    election: str
    candidate_id: str
    key: str
    order: int = 0
    won: bool = False
    withdrawn: bool = False
    read_on_win: str | None = None
    """Set by the core: a guarded-write key to read with the step that returns Won
    (see "Reading with the win" in the module docstring); adapters may ignore it."""


T = TypeVar("T", bound=Ticket)


class Signal(ABC):
    """Something to wait on for a change in the store: a watch, a bell file, a
    blocking query. Armed when created; :meth:`wait` may return True spuriously
    (the core then just re-reads), but must not miss a change made after arming.

    A signal that can be woken from another thread sets :attr:`interruptible` and
    implements :meth:`interrupt`; the core then waits on it without checking cancel
    every ``WAIT_SLICE`` (a cancel or close interrupts it). Optional: a signal that
    cannot is checked in slices, as before."""

    interruptible: bool = False
    """True if :meth:`interrupt` works (class or instance attribute)."""

    def interrupt(self) -> None:  # noqa: B027 - optional, see interruptible
        """Makes the current wait, or the next one, return True at once (a spurious
        wake-up: the core re-checks cancel and the store). Any thread; must not block."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Blocks at most ``timeout`` seconds; True once the watched state may have
        changed (and from then on), False on timeout."""

    def close(self) -> None:  # noqa: B027 - optional: most signals hold nothing to release
        """Releases the watch. Idempotent."""

    def __enter__(self) -> Signal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventSignal(Signal):
    """A :class:`Signal` over a :class:`threading.Event` that a store callback sets
    (watch callbacks, pub/sub listeners); ``on_close`` cancels the watch."""

    interruptible = True

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        self.event = threading.Event()
        self._on_close = on_close

    def fire(self) -> None:
        """Marks the watched state as changed (thread-safe)."""
        self.event.set()

    def interrupt(self) -> None:
        self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(max(0.0, timeout))

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class NoSignal(Signal):
    """Nothing to wait on but the clock (the core retries at :attr:`Wait.retry_at`)."""

    interruptible = True

    def __init__(self) -> None:
        self._woken = threading.Event()

    def wait(self, timeout: float) -> bool:
        return self._woken.wait(max(0.0, timeout))

    def interrupt(self) -> None:
        self._woken.set()


@dataclass(frozen=True)
class Won:
    """:meth:`Store.try_lead` outcome: the ticket leads, with this fencing token.

    ``read_done`` True: ``read`` is the value of the ticket's ``read_on_win`` key (None:
    no such key), read in the same step that decided the win, as linearizably as
    :meth:`Store.read`. False (the default): that key was not read; the core reads it."""

    token: int
    read: bytes | None = None
    read_done: bool = False


@dataclass(frozen=True)
class Wait:
    """:meth:`Store.try_lead`/:meth:`Store.observe_step` outcome: not yet; wait on
    ``signal`` and try again when it fires, or at ``retry_at`` (monotonic) at the
    latest -- e.g. when the session of an entry ahead is due to expire, or a polling
    fallback for notifications that can be lost."""

    signal: Signal
    retry_at: float | None = None


Step = Won | Wait

LossReporter = Callable[[Ticket, str], None]
"""The core's one channel for losses an adapter detects by itself (any thread)."""


class Store(ABC, Generic[T]):
    """A client's connection to one coordination store and its single session."""

    limits: StoreLimits

    proof_lags_one_renewal: bool = False
    """True where a successful renewal proves only that the store kept the session
    alive from the send time of the PREVIOUS successful renewal (or, for the first
    renewal of a session, of ``open_session``'s request), not from its own: the core
    then counts validity after a renewal from that earlier send time, ``t_prev_sent +
    lifetime * (1 - drift)``, and after ``open_session`` from its send time as usual.
    For a store whose renewal may be answered by a node that relays its record of the
    session to the deciding node later, with a lag well below ``lifetime / 3`` (the
    time between a successful renewal and the next; retries after a failure do not
    move the previous success): this renewal's answer shows the relay path was up
    after it was sent, so the earlier touch has reached the decider. Costs a third of
    the lifetime of validity slack (a cut is detected that much earlier); False: a
    renewal proves its own send time."""

    unheld_renewal_share: float | None = None
    """Where set (and :attr:`proof_lags_one_renewal` is False): while the session holds
    no leadership, the core renews it every ``lifetime * share`` seconds instead of
    ``lifetime / 3``. For a store that charges every renewal (Consul: a request to its
    leader per session) where waiting candidates are many: a waiter's session bounds no
    validity, it only has to outlive the wait (its queue entries die with it). Validity
    still counts from each successful renewal's send time, so a waiter that wins just
    before its next renewal leads for at least ``lifetime * (1 - drift - share)`` until
    that renewal (then every ``lifetime / 3``). Keep it at most ``(1 - drift) / 2``, so
    that :meth:`SessionKeeper.idle` holds between renewals, and well below 1, so that
    retries after a failed renewal fit in the lifetime."""

    def __init__(self) -> None:
        self.report_loss: LossReporter = lambda ticket, reason: None

    def bind(self, reporter: LossReporter) -> None:
        """Installs the core's loss channel (see the module docstring)."""
        self.report_loss = reporter

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL) -> Store[T]:
        """Connects to the store named by ``url``; rejects unknown URL options with a
        ConfigError. Creates nothing in the store (the session comes later)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """The backend URL without secrets, for messages and logs."""

    @abstractmethod
    def open_session(self, ttl: float) -> float:
        """Creates this client's session for ``ttl`` seconds (already validated) and
        returns the lifetime, in seconds from a renewal's send time, that the store
        GUARANTEES after each successful renewal (``ttl``, or less where the store
        is sent a shorter TTL so that a crashed leader blocks for at most ``ttl``)."""

    @abstractmethod
    def renew_session(self, held: frozenset[T]) -> None:
        """Renews the session once for every entry. Raises SessionExpired if the
        store ended the session, StoreUnavailable if it could not be asked; entries
        of ``held`` found gone are reported through :attr:`report_loss`."""

    @abstractmethod
    def close_session(self) -> None:
        """Ends the session at once, releasing every entry it holds. Best effort."""

    @abstractmethod
    def enqueue(self, election: str, candidate_id: str, value: bytes) -> T:
        """Atomically adds a candidate entry bound to the session, in arrival order."""

    @abstractmethod
    def try_lead(self, ticket: T) -> Step:
        """One non-blocking step towards leading (see the module docstring)."""

    @abstractmethod
    def withdraw(self, ticket: T) -> None:
        """Removes the entry (resign or abandoned campaign); a no-op if already gone."""

    @abstractmethod
    def proclaim(self, ticket: T, value: bytes) -> None:
        """Sets the leader's value; raises NotLeader unless ``ticket`` leads."""

    @abstractmethod
    def guarded_write(self, ticket: T, key: str, value: bytes) -> None:
        """Writes ``value`` under ``key`` in one transaction that commits only if
        ``ticket`` still leads; raises NotLeader otherwise (nothing written)."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """Reads a key written by :meth:`guarded_write`, or None."""

    @abstractmethod
    def leader(self, election: str) -> LeaderInfo | None:
        """The current leader by a linearizable read, or None."""

    @abstractmethod
    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        """The leader (linearizable read) and a Wait armed before that read that fires
        on its next change. After a reconnect the core calls this again, so no latest
        state is missed."""

    @abstractmethod
    def contenders(self, election: str) -> list[Contender]:
        """Every live candidate of ``election`` -- the leader and each waiter -- in
        arrival order where the store has one (like kazoo's ``Election.contenders()``
        or Curator's ``getParticipants()``). Read from the store, not from this client's
        memory; entries of dead sessions are not listed."""

    @abstractmethod
    def close(self) -> None:
        """Closes connections (after :meth:`close_session`). Idempotent."""
