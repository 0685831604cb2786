"""The narrow interface every backend implements: a few store primitives.

The election logic that must be identical everywhere -- validity deadlines, loss
detection, ``on_lost`` callbacks, timeouts, cancellation, observe -- lives once in
:mod:`tenure.client` and :mod:`tenure.session`. An adapter only translates these
primitives to its store (one module per store in :mod:`tenure.adapters`) and must
implement all of them: there are no optional methods, and what differs between stores
(TTL range, partition safety) is data in :class:`StoreLimits`.

Contract an adapter must keep (the conformance suite checks it):

* One *session* (the store's liveness object: lease, ZooKeeper session, Consul
  session, lease keys, SQLite row) per :class:`Store`, shared by every candidate entry
  it creates. Entries die with the session. Renewing the session costs the same for
  one entry or ten thousand.
* A successful :meth:`Store.renew_session` whose request was sent at ``t`` guarantees
  the store keeps the session alive at least until ``t + ttl`` (local monotonic clock).
  A session the store has expired must never be revived by a renewal.
* :meth:`Store.await_turn` returns only when the ticket leads according to a
  linearizable read or a conditional write, never a possibly stale replica.
* Tokens returned for one election strictly increase with each new leadership, also
  across store restarts and store-node failover.
* Blocking calls return promptly (within ``WAIT_SLICE`` seconds) when their
  ``cancelled`` event is set or their deadline passes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenure.config import BackendURL

WAIT_SLICE = 0.2
"""Longest time a blocking adapter call may go without checking its cancel event."""


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
    """

    candidate_id: str
    value: bytes
    order: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form (value decoded as UTF-8 with replacement)."""
        return {
            "candidate_id": self.candidate_id,
            "value": self.value.decode("utf-8", "replace"),
            "order": self.order,
        }


@dataclass(frozen=True)
class StoreLimits:
    """What a backend can do, as data rather than missing methods.

    ``min_ttl``/``max_ttl`` bound the session TTL in seconds; ``ttl_step`` is the
    granularity the store accepts (etcd: whole seconds), or None for any value.
    ``partition_safe`` is False when a network partition can produce two leaders
    (a single Redis instance); ``warning`` then says why.
    """

    min_ttl: float
    max_ttl: float
    ttl_step: float | None = None
    partition_safe: bool = True
    warning: str = ""


@dataclass
class Ticket:
    """One candidate's entry in an election's queue, created by :meth:`Store.enqueue`.

    ``key`` is the store's identity of the entry (a key, node path or row id);
    ``order`` its position in arrival order where the store has one.
    """

    election: str
    candidate_id: str
    key: str
    order: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.election, self.key))


LossReporter = Callable[[Ticket, str], None]
"""Called by an adapter (from any thread) when it learns a held ticket no longer leads."""


class Store(ABC):
    """A client's connection to one coordination store and its single session."""

    limits: StoreLimits

    def __init__(self) -> None:
        self._report_loss: LossReporter = lambda ticket, reason: None

    def set_loss_reporter(self, reporter: LossReporter) -> None:
        """Installs the core's callback for losses the adapter detects by itself."""
        self._report_loss = reporter

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL) -> Store:
        """Connects to the store named by ``url``; rejects unknown URL options with a
        ConfigError. Creates nothing in the store (the session comes later)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """The backend URL without secrets, for messages and logs."""

    @abstractmethod
    def open_session(self, ttl: float) -> None:
        """Creates this client's session with ``ttl`` seconds (already validated)."""

    @abstractmethod
    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        """Renews the session once; returns those of ``held`` that no longer lead.

        Raises SessionExpired if the store ended the session, StoreUnavailable if it
        could not be asked. Adapters that learn of losses by watches may return an
        empty set and call the loss reporter instead.
        """

    @abstractmethod
    def close_session(self) -> None:
        """Ends the session at once, releasing every entry it holds. Best effort."""

    @abstractmethod
    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        """Atomically adds a candidate entry bound to the session, in arrival order."""

    @abstractmethod
    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        """Blocks until ``ticket`` leads and returns its fencing token.

        Raises CampaignTimeout when ``time.monotonic()`` reaches ``deadline``,
        CampaignCancelled when ``cancelled`` is set, SessionExpired if the entry died
        with the session. Never removes the ticket: the caller withdraws it.
        Waits on store notifications where the store has them (no busy polling).
        """

    @abstractmethod
    def withdraw(self, ticket: Ticket) -> None:
        """Removes the entry (resign or abandoned campaign); a no-op if already gone."""

    @abstractmethod
    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        """Sets the leader's value; raises NotLeader unless ``ticket`` leads."""

    @abstractmethod
    def leader(self, election: str) -> LeaderInfo | None:
        """The current leader by a linearizable read, or None."""

    @abstractmethod
    def contenders(self, election: str) -> list[Contender]:
        """Every live candidate of ``election`` -- the leader and each waiter -- in
        arrival order where the store has one (like kazoo's ``Election.contenders()``
        or Curator's ``getParticipants()``). Read from the store, not from this client's
        memory; entries of dead sessions are not listed."""

    @abstractmethod
    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        """Blocks until the leader differs from ``known`` or ``deadline`` passes; returns
        the leader then. After a reconnect it re-reads the state, so no latest state
        is missed."""

    @abstractmethod
    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        """Writes ``value`` under ``key`` in one transaction that commits only if
        ``ticket`` still leads; raises NotLeader otherwise (nothing written)."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """Reads a key written by :meth:`guarded_write`, or None."""

    @abstractmethod
    def close(self) -> None:
        """Closes connections (after :meth:`close_session`). Idempotent."""
