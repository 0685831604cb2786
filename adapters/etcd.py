"""The etcd v3 backend: ``etcd://host:port[,host:port...][?prefix=..&user=..&...]``.

Mapping of the contract (keys under ``prefix``, default ``/tenure``):

* session: ONE lease per store (``LeaseGrant`` with the TTL in whole seconds), shared
  by every election. :meth:`EtcdStore.renew_session` sends ONE ``LeaseKeepAlive``
  request, whatever the number of elections held: keepalive traffic is one request per
  TTL/3 per client. Its timeout is at most TTL/4, so a hung member cannot hang the
  renewer. A session that holds no leadership (a waiter's) is renewed every 0.45 x TTL
  instead (``unheld_renewal_share``, see :class:`EtcdStore`). A keepalive answered
  with ``TTL <= 0`` means the lease is gone
  (SessionExpired); etcd never revives an expired lease (its lessor refuses to renew
  an expired lease and waits for the revoke).
* candidate: the key ``<prefix>/<election>/#<lease-id-hex>``, bound to the lease and
  created in a transaction only if absent (``create_revision == 0``). The ``#`` ends
  the election name (names cannot contain it), so election ``a``'s range never
  includes the keys of election ``a/b``. Its value is ``candidate_id`` LF ``value``.
* leader: the key with the lowest create revision under ``<prefix>/<election>/#``,
  by a linearizable range sorted by create revision (limit 1). The fencing token is
  that key's create revision: etcd revisions only grow (also across member restarts
  and leader changes), and a key created later always gets a higher one. The mod
  revision is not a token: it changes on every proclaim.
* try_lead: one read-only (hence linearizable) transaction reads that the ticket's
  key still exists with its create revision (else SessionExpired) and its predecessor,
  the key with the greatest create revision below it. No predecessor: Won, with the
  create revision as token. Else the Wait's signal is a watch on ONLY the predecessor,
  for its deletion, from the read's revision + 1: etcd replays history from that
  revision, so the watch misses nothing that happened after the read (as good as armed
  before it). One leader change thus wakes one waiter, not all of them (no herd):
  ``watch_notifications`` counts the watch responses with events this store received.
* read with the win (``Ticket.read_on_win``, docs/design.md): that key's range is a
  third read of the same transaction (one revision).
* proclaim / guarded write: transactions that commit only if our key still has the
  create revision it had when we won. That suffices: when try_lead returned Won, a
  linearizable read saw no key with a lower create revision, and no such key can
  appear later (new keys get higher revisions), so while our key exists *with that
  create revision* (a deleted and re-created key gets a new one) we are the lowest,
  i.e. the leader. For a ticket that never won (``ticket.won`` False), the transaction
  also compares that every key of the election has a create revision >= ours. Guarded
  writes go to ``<prefix>/data/<key>`` (no lease: the data outlives the writer). A
  refused transaction is NotLeader; the core marks the leadership lost.
* observe_step: a linearizable range read of the leader, and a watch on the
  election's range from that read's revision + 1 (any put or delete fires it).
* signals never hang: a watch's signal also fires when its stream ends, when the
  history it would start from was compacted, when it could not be created, and when
  the store moves to another member (see Connection). Watches require a leader, so an
  isolated member ends them rather than leaving them open without events (an observer
  makes no other call that would fail there). The core then steps again: it reads
  again (failing over from a member that cannot serve) and watches again.
* loss: besides the core's deadline and lease expiry (keepalive TTL <= 0), a watch on
  each won key (its guard) reports its deletion (e.g. by an operator) through
  ``report_loss``, unless the ticket was withdrawn. Guards are created by one guard
  thread per store, not by the winning step: the successor's only round trip after its
  wake is try_lead's read (the watch replays from that read's revision). A guard that
  could not be created (history compacted, a member failed, a timeout) or whose stream
  ended is re-armed: a linearizable read of the key first -- gone, or with another
  create revision, is a loss; else a watch from that read's revision + 1, which misses
  nothing (the key existed without a break up to that revision). A failing read is
  retried with backoff (and logged) until the ticket is withdrawn or the store closed;
  meanwhile the validity deadline, which never depends on guards, still holds.

Layouts (``layout=``): ``tenure``, the default, is the mapping above; ``native`` is
etcd's own ``concurrency.Election`` (what ``etcdctl elect`` runs), so both kinds queue
in ONE election. The election name (after ``native_prefix``) IS the recipe's prefix:
keys ``<name>/<lease-id %x>`` holding the value only, so the lease-id hex IS the
candidate id (readers report it; tenure's ticket carries it too). Every step above
already is the recipe's (Campaign, Leader, waitDeletes, Proclaim, Resign, Rev); what
differs is that the range ``<name>/`` holds election ``<name>/x`` too, and that native
candidates have no validity deadline (docs/interop.md).

Connection (:mod:`tenure.adapters.etcd_connection`): pyetcd's client over every listed
member. A failed call moves it to the next member (round robin) and fires every open
watch signal; calls are not retried in the adapter beyond trying an idempotent
UNAVAILABLE call once on each other member -- the core retries renewals and steps.

Clock reasoning: a keepalive SENT at ``t`` and answered with a positive TTL was
received by the etcd leader's lessor after ``t``, which then set the lease to expire
no earlier than ``t + TTL`` on its clock; so :meth:`EtcdStore.open_session` returns
the TTL as the lifetime from a renewal's send time, and the core stays valid only
until ``t + TTL x (1 - drift)`` on ours. Expiry is late rather than early: the lessor
checks for expired leases every 500 ms (etcd v3.4 lease/lessor.go:621, ``runLoop``'s
``time.After(500 * time.Millisecond)``; main: server/lease/lessor.go:623), and an etcd
leader change extends every lease by a full TTL (etcd#11058: a 2 s key seen deleted
14-20 s after a leader kill). So a crash failover takes TTL - (the dead leader's last
keepalive's age) + 0..500 ms of the lessor's loop + the waiter's wake (its watch event,
then one read: 2-7 ms measured); its p90 sits near TTL + 250 ms by the store alone.
Safety never depends on prompt expiry, only liveness does (the next leader waits).

Limits: TTLs are whole seconds from 2 s (the server raises any TTL below
ceil(1.5 x election timeout), 2 s with default settings; a server that would change
the requested TTL is reported as a ConfigError at the first campaign) to 86400 s.
Tokens restart from low values only if the cluster's data is wiped (restoring a
snapshot keeps revisions). Prefixes of two deployments must not nest. Waiting has no
``retry_at``: etcd does not say when the lease of the key ahead will expire, so a
waiter relies on its watch (and the failover firing it).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyetcd import etcdrpc
from pyetcd.utils import prefix_range_end
from pyetcd.watch import WatchResponse

from tenure.adapters.etcd_connection import EtcdConfig, EtcdConnection, parse_url
from tenure.config import BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable
from tenure.store import (
    Contender,
    EventSignal,
    LeaderInfo,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

log = logging.getLogger("tenure")

MAX_TTL = 86400
_CREATE = etcdrpc.Compare.CREATE
_BY_CREATE = etcdrpc.RangeRequest.CREATE


@dataclass(eq=False)
class EtcdTicket(Ticket):
    """A candidate key; ``order`` is its create revision (the token once it leads),
    ``lease`` the lease it is bound to, ``guard`` cancels the watch that reports the
    key's deletion once it won."""

    lease: int = 0
    guard: Callable[[], None] | None = None
    guarding: bool = False
    """Set by the first Won: its guard is armed (or being armed) off the campaign thread."""
    guard_attempt: int = 0
    """The attempt of the guard job arming the current watch: a watch whose stream ends
    soon re-arms with attempt + 1 (backing off), one that lived a while with 1."""


@dataclass(frozen=True)
class _GuardJob:
    """Arming the guard of ``ticket``: a watch from ``start_revision``, or (0) a
    linearizable read of the key first; ``attempt`` counts the failures before it."""

    ticket: EtcdTicket
    start_revision: int
    attempt: int = 0


_GUARD_BACKOFF = 0.05
_GUARD_BACKOFF_MAX = 2.0
_GUARD_STABLE = 10.0
"""Seconds a guard's watch must live for its ending to reset the back-off: a stream that
ends sooner (a member or proxy cancelling each watch right after creating it) re-arms
with a growing delay, not at round-trip speed."""


def _guard_delay(attempt: int) -> float:
    """Seconds before a guard's ``attempt``: the first re-check follows a failed watch
    at once, later ones back off exponentially up to ``_GUARD_BACKOFF_MAX``."""
    if attempt <= 1:
        return 0.0
    return float(min(_GUARD_BACKOFF_MAX, _GUARD_BACKOFF * 2 ** (attempt - 1)))


def _compare_create(key: bytes, result: int, revision: int, range_end: bytes = b"") -> Any:
    return etcdrpc.Compare(
        key=key, range_end=range_end, target=_CREATE, result=result, create_revision=revision
    )


def _range_op(request: Any) -> Any:
    return etcdrpc.RequestOp(request_range=request)


def _delete_op(key: bytes) -> Any:
    return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))


class EtcdStore(Store[EtcdTicket]):
    """The contract over an etcd v3 cluster (see the module docstring)."""

    limits = StoreLimits(min_ttl=2, max_ttl=MAX_TTL, ttl_step=1)
    unheld_renewal_share = 0.45
    """A session holding no leadership is renewed every 0.45 x its lifetime, not a third
    (``Store.unheld_renewal_share``): every keepalive costs the client gRPC work and the
    etcd leader a request, and with 1 leader and 10 waiters the waiters sent 15 of the
    16.5 keepalives a second (TTL 2 s). A waiter's lease bounds no validity; it only has
    to outlive the wait. Margin: etcd keeps the lease the TTL after the keepalive
    arrives (a lessor loop of 500 ms makes expiry later, never earlier), so 0.55 x TTL
    is left for that keepalive (timeout TTL/4) and the core's quick retries. A lapse
    costs no safety, only the waiter's place in line: its key goes with the lease, the
    next step finds it gone (SessionExpired) and the core enqueues it again at the end."""

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__()
        self.config = config
        self._lock = threading.Lock()
        self._signals: set[EventSignal] = set()  # open watch signals, fired on failover
        self._closed = False
        self._lease = 0
        self._ttl = 0
        self.keepalives = 0
        """Keepalive requests sent (one per renewal, whatever the number of elections)."""
        self.watch_notifications = 0
        """Watch responses carrying events delivered to this store's watch signals."""
        self.watches_created = 0
        """Watch signals this store created (a waiter creates one per predecessor)."""
        self._guards: queue.SimpleQueue[_GuardJob | None] | None = None
        self._etcd = EtcdConnection(config, on_failover=self._fire_signals)

    @classmethod
    def from_url(cls, url: BackendURL) -> EtcdStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    @property
    def member(self) -> str:
        """``host:port`` of the member this store currently talks to."""
        return self._etcd.member

    def _election_range(self, election: str) -> tuple[bytes, bytes]:
        if self.config.native:  # NewElection(s, pfx) ranges over pfx + "/"
            start = f"{self.config.native_prefix}{election}/".encode()
        else:
            start = f"{self.config.prefix}/{election}/#".encode()
        return start, prefix_range_end(start)

    def _pack(self, candidate_id: str, value: bytes) -> bytes:
        """A candidate key's value: the value alone in native layout (as etcdctl elect
        writes its proposal), else the candidate id, LF, the value."""
        return value if self.config.native else candidate_id.encode() + b"\n" + value

    def _unpack(self, election: str, kv: Any) -> LeaderInfo:
        if self.config.native:  # no id stored: the key's lease-id hex stands for it
            key = bytes(kv.key)
            name = key[len(self._election_range(election)[0]):] or key
            return LeaderInfo(election, name.decode(errors="replace"), bytes(kv.value),
                              int(kv.create_revision))
        candidate_id, _, value = bytes(kv.value).partition(b"\n")
        return LeaderInfo(election, candidate_id.decode(), value, int(kv.create_revision))

    def _data_key(self, key: str) -> bytes:
        return f"{self.config.prefix}/data/{key}".encode()

    # -- signals --------------------------------------------------------------------

    def _signal(self, key: bytes, start_revision: int, *, range_end: bytes = b"",
                deletes_only: bool = False) -> EventSignal:
        """A watch from ``start_revision`` as a Wait's signal: fires on its events, when
        its stream ends, on a failover, and at once if it could not be made."""
        epoch = self._etcd.epoch
        cancel: Callable[[], None] | None = None

        def on_response(response: object) -> None:
            if isinstance(response, WatchResponse) and response.events:
                with self._lock:
                    self.watch_notifications += 1
            signal.fire()  # events, or the stream ended (None, an error, a compaction)

        def close() -> None:
            with self._lock:
                self._signals.discard(signal)
            if cancel is not None:
                cancel()

        signal = EventSignal(on_close=close)
        cancel = self._etcd.watch(key, start_revision, on_response, range_end=range_end,
                                  deletes_only=deletes_only)
        with self._lock:
            if cancel is not None:
                self.watches_created += 1
                self._signals.add(signal)
            broken = cancel is None or self._closed or self._etcd.epoch != epoch
        if broken:
            signal.fire()  # the core steps again: it re-reads and watches anew
        return signal

    def _fire_signals(self) -> None:
        """Wakes every waiter and observer (failover or close): they read again."""
        with self._lock:
            signals = list(self._signals)
        for signal in signals:
            signal.fire()

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        requested = round(ttl)
        response = self._etcd.grant(requested)
        if response.error:
            raise StoreUnavailable(f"etcd {self.description}: lease grant: {response.error}")
        if requested != response.TTL:
            self._etcd.revoke(response.ID)
            raise ConfigError(
                f"etcd at {self.description} grants {response.TTL} s leases when asked for "
                f"{requested} s: its minimum lease TTL is {response.TTL} s (ceil(1.5 x "
                f"election timeout)); use ttl={response.TTL} or more, or lower the "
                "server's --election-timeout"
            )
        self._ttl = requested
        self._lease = response.ID
        return float(requested)

    def renew_session(self, held: frozenset[EtcdTicket]) -> None:
        # One keepalive covers every held key; deleted keys are reported by their watches.
        lease = self._lease
        if not lease:
            raise SessionExpired(f"etcd {self.description}: no session")
        with self._lock:
            self.keepalives += 1
        response = self._etcd.keepalive(lease, min(self.config.timeout, self._ttl / 4))
        if response is None:
            raise StoreUnavailable(f"etcd {self.description}: keepalive got no answer")
        if response.TTL <= 0:
            raise SessionExpired(f"etcd {self.description}: lease {lease:x} has expired")

    def close_session(self) -> None:
        lease, self._lease = self._lease, 0
        if lease:
            self._etcd.revoke(lease)

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> EtcdTicket:
        lease = self._lease
        if not lease:
            raise SessionExpired(f"etcd {self.description}: no session")
        key = self._election_range(election)[0] + f"{lease:x}".encode()
        put = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=key, value=self._pack(candidate_id, value), lease=lease))
        create = [_compare_create(key, etcdrpc.Compare.EQUAL, 0)]
        for _ in range(2):
            try:
                response = self._etcd.txn("enqueue", create, [put], [_delete_op(key)])
            except SessionExpired:
                raise
            except StoreUnavailable:
                # The put may have committed unheard (e.g. across an etcd leader change):
                # remove it, else it would queue (and maybe lead) unattended. The core
                # enqueues again.
                with contextlib.suppress(StoreUnavailable):
                    self._etcd.txn("enqueue cleanup", [], [_delete_op(key)])
                raise
            if response.succeeded:
                if self.config.native:  # its id is what readers (and etcdctl) see of it
                    log.info("etcd layout=native: candidate %s is key %s", candidate_id,
                             key.decode())
                    candidate_id = f"{lease:x}"
                return EtcdTicket(election, candidate_id, key.decode(),
                                  int(response.header.revision), lease=lease)
            # Found a key of an earlier attempt, or of an earlier campaign of this client
            # whose withdrawal failed (a client campaigns once per election at a time):
            # the failure branch deleted it, so the second try creates it anew.
        raise StoreUnavailable(f"etcd {self.description}: enqueue kept finding a stale key")

    def _turn(self, ticket: EtcdTicket) -> tuple[bytes | None, int, bytes | None]:
        """(the key just ahead of ``ticket``, or None if it leads; the read's revision;
        the value of ``ticket.read_on_win``), by one linearizable read-only transaction:
        the three ranges are read at ONE revision, so the marker read is as linearizable
        as :meth:`read` and sees every write before the release that emptied the range
        ahead. SessionExpired if the entry is gone."""
        key = ticket.key.encode()
        start, end = self._election_range(ticket.election)
        mine = etcdrpc.RangeRequest(key=key, keys_only=True)
        ahead = etcdrpc.RangeRequest(
            key=start, range_end=end, keys_only=True, limit=1,
            sort_target=_BY_CREATE, sort_order=etcdrpc.RangeRequest.DESCEND,
            max_create_revision=ticket.order - 1,  # >= 1: revision 1 is the empty store
        )
        reads = [_range_op(mine), _range_op(ahead)]
        if ticket.read_on_win is not None:
            reads.append(_range_op(etcdrpc.RangeRequest(key=self._data_key(ticket.read_on_win))))
        response = self._etcd.txn("try lead", [], reads, read_only=True)
        own = response.responses[0].response_range.kvs
        if not own or own[0].create_revision != ticket.order:
            raise SessionExpired(
                f"the entry of {ticket.candidate_id} in {ticket.election!r} is gone from "
                "etcd (its lease expired or it was deleted)"
            )
        before = response.responses[1].response_range.kvs
        data = response.responses[2].response_range.kvs if len(reads) > 2 else []
        return ((bytes(before[0].key) if before else None), int(response.header.revision),
                bytes(data[0].value) if data else None)

    def try_lead(self, ticket: EtcdTicket) -> Step:
        ahead, revision, marker = self._turn(ticket)
        if ahead is not None:
            return Wait(self._signal(ahead, revision + 1, deletes_only=True))
        if not ticket.guarding:
            ticket.guarding = True
            self._arm_guard(ticket, revision + 1)
        return Won(ticket.order, marker, read_done=ticket.read_on_win is not None)

    def _arm_guard(self, ticket: EtcdTicket, start_revision: int, attempt: int = 0) -> None:
        """Queues the guard of a won ticket for the guard thread. Creating a watch waits
        for etcd's answer (pyetcd's ``add_callback``): on the campaign thread that was a
        second round trip between the wake and the win. The watch starts at the win's
        read revision + 1, so arming it later misses no deletion. ``start_revision`` 0
        re-reads the key first (see :meth:`_arm`)."""
        with self._lock:
            if self._closed:
                return
            if self._guards is None:
                self._guards = queue.SimpleQueue()
                threading.Thread(target=self._run_guards, args=(self._guards,), daemon=True,
                                 name="tenure-etcd-guards").start()
            self._guards.put(_GuardJob(ticket, start_revision, attempt))

    def _run_guards(self, guards: queue.SimpleQueue[_GuardJob | None]) -> None:
        """The guard thread: arms each queued guard until the store closes. A guard that
        could not be armed waits for its retry in ``later``, not holding up the others;
        an unexpected error is logged and retried the same way, never ending the thread
        (every later guard of the store depends on it)."""
        later: list[tuple[float, int, _GuardJob]] = []  # (due, tie-break, job)
        order = itertools.count()
        while True:
            if later and later[0][0] <= time.monotonic():
                job = heapq.heappop(later)[2]
            else:
                wait = max(0.0, later[0][0] - time.monotonic()) if later else None
                try:
                    item = guards.get(timeout=wait)
                except queue.Empty:
                    continue
                if item is None:
                    return
                delay = _guard_delay(item.attempt)
                if delay > 0:  # a re-arm after a stream that ended soon: back off
                    heapq.heappush(later, (time.monotonic() + delay, next(order), item))
                    continue
                job = item
            try:
                retry = self._arm(job)
            except Exception:
                log.exception("etcd %s: arming the guard of %s failed (will retry)",
                              self.description, job.ticket.key)
                retry = _GuardJob(job.ticket, 0, job.attempt + 1)
            if retry is not None:
                due = time.monotonic() + _guard_delay(retry.attempt)
                heapq.heappush(later, (due, next(order), retry))

    def _arm(self, job: _GuardJob) -> _GuardJob | None:
        """Arms ``job``'s guard; returns the job to retry, or None (armed, loss
        reported, or no longer needed: withdrawn or closed). With no start revision it
        reads the key (linearizable: a serializable read of a lagging member could
        still show a deleted key): gone or re-created is a loss, else the watch starts
        at the read's revision + 1 -- the key existed without a break until then."""
        ticket, start_revision = job.ticket, job.start_revision
        if ticket.withdrawn or self._closed:
            return None
        if not start_revision:
            try:
                response = self._etcd.range(
                    etcdrpc.RangeRequest(key=ticket.key.encode(), keys_only=True), "guard read")
            except StoreUnavailable as exc:
                log.warning("etcd %s: the leader key %s is unguarded (its deletion would not "
                            "be reported before the deadline): reading it failed, retrying: %s",
                            self.description, ticket.key, exc)
                return _GuardJob(ticket, 0, job.attempt + 1)
            kvs = response.kvs
            if not kvs or kvs[0].create_revision != ticket.order:
                if not ticket.withdrawn:
                    self.report_loss(ticket, "its key was deleted from etcd (found gone "
                                     "when its guard watch was re-armed)")
                return None
            start_revision = int(response.header.revision) + 1
        ticket.guard_attempt = job.attempt  # read by the watch's ending (see _guard)
        cancel = self._guard(ticket, start_revision)
        if cancel is None:
            log.info("etcd %s: the guard watch of %s could not be made; re-reading the key",
                     self.description, ticket.key)
            return _GuardJob(ticket, 0, job.attempt + 1)
        with self._lock:  # withdraw() takes the guard under this lock
            if ticket.withdrawn or self._closed:
                stale = cancel
            else:
                stale, ticket.guard = None, cancel
        if stale is not None:
            stale()
        return None

    def _guard(self, ticket: EtcdTicket, start_revision: int) -> Callable[[], None] | None:
        """A watch on the won key from ``start_revision`` that reports its deletion --
        by an operator, or a lease expiry not heard of yet -- as a loss, unless the
        ticket was withdrawn; when its stream ends (an error, a failover, a compaction)
        the guard is queued to be re-armed: at once if the watch lived
        ``_GUARD_STABLE`` seconds, else after a back-off growing with ``ticket.guard_attempt``
        (the failures and short-lived watches before this one). None if the watch could not
        be made."""
        made, attempt = time.monotonic(), ticket.guard_attempt

        def on_response(response: object) -> None:
            if ticket.withdrawn:
                return
            if isinstance(response, WatchResponse):
                if response.events:
                    self.report_loss(ticket, "its key was deleted from etcd")
                return
            # the stream ended: re-read, re-arm -- backing off if it ended soon
            lived = time.monotonic() - made >= _GUARD_STABLE
            self._arm_guard(ticket, 0, attempt=1 if lived else min(64, attempt + 1))

        return self._etcd.watch(ticket.key.encode(), start_revision, on_response,
                                deletes_only=True)

    def withdraw(self, ticket: EtcdTicket) -> None:
        with self._lock:
            guard, ticket.guard = ticket.guard, None
        if guard is not None:
            guard()
        key = ticket.key.encode()
        self._etcd.txn("withdraw", [_compare_create(key, etcdrpc.Compare.EQUAL, ticket.order)],
                       [_delete_op(key)])

    def _guarded(self, ticket: EtcdTicket, action: str, put: Any) -> None:
        """Commits ``put`` only if ``ticket`` leads (see the module docstring)."""
        key = ticket.key.encode()
        compare = [_compare_create(key, etcdrpc.Compare.EQUAL, ticket.order)]
        if not ticket.won:
            start, end = self._election_range(ticket.election)
            compare.append(
                _compare_create(start, etcdrpc.Compare.GREATER, ticket.order - 1, end)
            )
        response = self._etcd.txn(action, compare, [etcdrpc.RequestOp(request_put=put)])
        if not response.succeeded:
            raise NotLeader(
                f"{action} refused by etcd: {ticket.candidate_id} no longer leads election "
                f"{ticket.election!r}"
            )

    def proclaim(self, ticket: EtcdTicket, value: bytes) -> None:
        # The put keeps the lease: a put without one would detach the key from it.
        self._guarded(ticket, "proclaim", etcdrpc.PutRequest(
            key=ticket.key.encode(), value=self._pack(ticket.candidate_id, value),
            lease=ticket.lease))

    def guarded_write(self, ticket: EtcdTicket, key: str, value: bytes) -> None:
        self._guarded(ticket, "guarded write",
                      etcdrpc.PutRequest(key=self._data_key(key), value=value))

    def read(self, key: str) -> bytes | None:
        response = self._etcd.range(etcdrpc.RangeRequest(key=self._data_key(key)), "read")
        return bytes(response.kvs[0].value) if response.kvs else None

    # -- observing ------------------------------------------------------------------

    def _leader_at(self, election: str) -> tuple[LeaderInfo | None, int]:
        start, end = self._election_range(election)
        response = self._etcd.range(etcdrpc.RangeRequest(
            key=start, range_end=end, limit=1, sort_target=_BY_CREATE,
            sort_order=etcdrpc.RangeRequest.ASCEND), "leader")
        current = self._unpack(election, response.kvs[0]) if response.kvs else None
        return current, int(response.header.revision)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._leader_at(election)[0]

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        current, revision = self._leader_at(election)
        start, end = self._election_range(election)
        return current, Wait(self._signal(start, revision + 1, range_end=end))

    def contenders(self, election: str) -> list[Contender]:
        start, end = self._election_range(election)
        response = self._etcd.range(etcdrpc.RangeRequest(
            key=start, range_end=end, sort_target=_BY_CREATE,
            sort_order=etcdrpc.RangeRequest.ASCEND), "contenders")
        infos = (self._unpack(election, kv) for kv in response.kvs)
        return [Contender(info.candidate_id, info.value, info.token) for info in infos]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            guards, self._guards = self._guards, None
        if guards is not None:
            guards.put(None)
        self._fire_signals()
        self._etcd.close()
