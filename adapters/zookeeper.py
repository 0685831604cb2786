"""The ZooKeeper backend: ``zookeeper://host:port[,host:port...][/path][?options]``.

    client = tenure.connect("zookeeper://10.0.0.5:2181,10.0.0.6:2181/apps?prefix=/tenure",
                            ttl=4)
    with client.election("jobs/nightly").campaign() as lead: ...

Mapping of the contract (kazoo, ZooKeeper 3.5+):

* session: ONE kazoo session per store, its session timeout = the TTL (rounded up to
  whole milliseconds). Every candidate node is ephemeral, bound to it. Renewal is one
  ``sync`` round trip, whatever the number of elections (kazoo adds its own pings only
  when the connection is otherwise idle for TTL/3). The server bounds session timeouts
  to [minSessionTimeout, maxSessionTimeout] (default 2-20 x tickTime) and silently
  changes a request outside: the negotiated timeout is checked after connecting and a
  mismatch is a ConfigError naming the server's bound.
* candidates: ephemeral sequential nodes ``<root>/elections/<name>/c-<guid>-<seq>``
  (data: candidate id, newline, value). ``<root>`` is the URL path plus ``prefix``
  (default ``/tenure``); the election's node is never deleted, so sequences never
  reset. The leader is the lowest sequence; each waiter watches ONLY its predecessor
  (an ``exists`` watch: one notification per leader change, no herd) and re-reads.
* fencing token: the candidate node's ``czxid`` (the zxid of the transaction that
  created it). zxids are ensemble-wide, 64-bit, strictly increasing, survive server
  restarts and leader failover, and -- unlike the sequence suffix -- do not restart
  if someone deletes the election node. Within one election, a later candidate has a
  higher sequence AND a higher czxid, so token order is queue order.
* deciding: a candidate decides it leads from ``get_children`` on its own server. That
  read is not stale in the dangerous direction: ZooKeeper applies transactions in zxid
  order and a session always reads its own writes, so every node created before ours
  (all lower sequences) is visible once ours is; a stale read can only show a
  predecessor that is already gone (we then wait for its watch). Then, as Curator
  does after its two-leaders bug, we check that our node's ``ephemeralOwner`` is the
  session we renew. ``leader()``/``read()`` call ``sync`` before reading.
* why one node's existence is leadership: once our node is the lowest, no lower one
  can appear (a new node always gets a higher sequence in a live parent), so "our node
  still exists" is "we still lead". Proclaim is a ``set_data`` on our node; a guarded
  write is one multi-op transaction ``check(our node) + set/create <root>/data/<key>``.
  Our node's exact path (with its guid and sequence) cannot be recreated by anyone, so
  the check cannot pass for a successor's node.
* loss: a watch on our own leading node reports its deletion through the loss
  reporter; session expiry (kazoo LOST, or a new session id) ends every leadership
  and ``renew_session`` raises SessionExpired. SUSPENDED (connection lost) is not a
  loss: renewals fail with StoreUnavailable and the core's validity deadline ends
  leadership in time. After every reconnect the adapter re-reads (ZooKeeper watches do
  not report what happened while disconnected) and re-arms its watches.
* ACLs: with digest credentials (``digest_user`` plus the password from the URL,
  ``digest_password_file`` or ``TENURE_ZOOKEEPER_DIGEST_PASSWORD``) every node tenure
  creates is creator-all: clients without those credentials can neither read nor
  delete candidates (deleting a child needs DELETE on the election node, which is also
  creator-all). Without credentials the ACL is open: anyone who reaches the ensemble
  can delete a leader's node (the leader then sees the loss).

Clock reasoning. A ``sync`` sent at ``t`` that succeeds was received by the server at
or after ``t``; the server resets the session's expiry on every request it receives,
and expires it only after the session timeout (= TTL) without one, rounded UP to its
next tick. So the session lives until at least ``t + TTL``, which is what the core
assumes. ZooKeeper never revives an expired session: a reconnect with it is refused,
and kazoo then opens a NEW session, which this adapter reports as SessionExpired until
the core opens its session again. Limits: in an ensemble, a follower relays the
session's touches to the leader in its ping replies (every tickTime/2); a follower cut
from the leader within that window may leave the leader's record up to tickTime/2
older than our send time: choose ``drift >= tickTime / (2 x TTL)`` if this matters
(with tickTime=200 ms and TTL=4 s: 0.025). Clients consider a connection dead after
2/3 of the session timeout without an answer and then try the next server; the server
closes a connection that stays silent for the session timeout.

Other limits: the sequence counter of an election node is a 32-bit signed integer
(2^31 candidate joins and leaves per election). ``sync``-then-read is ZooKeeper's
strongest read, not a quorum read.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

from tenure.config import BackendURL, parse_duration_option
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    NotLeader,
    SessionExpired,
    StoreUnavailable,
)
from tenure.store import WAIT_SLICE, Contender, LeaderInfo, Store, StoreLimits, Ticket

OPTIONS = {
    "prefix": "znode under the URL path holding tenure's nodes (default /tenure)",
    "digest_user": "user for digest authentication and creator-only ACLs",
    "digest_password_file": "file holding the digest password",
    "timeout": "seconds to wait for a connection and for calls without a session "
    "(default 10)",
}
PASSWORD_ENV = "TENURE_ZOOKEEPER_DIGEST_PASSWORD"
DEFAULT_PREFIX = "/tenure"
DEFAULT_TIMEOUT = 10.0
OBSERVER_SESSION_MS = 10_000
"""Session timeout asked for by a store used only for reading (no candidates)."""


def _component(name: str) -> str:
    """An election name or key as ONE znode name (``/`` escaped, never ``.``/``..``)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _sequence(node: str) -> int:
    return int(node.rsplit("-", 1)[1])


def _check_path(value: str, what: str) -> str:
    """A ZooKeeper path prefix: ``/a/b`` (or "" for the root)."""
    path = value.rstrip("/") if value != "/" else ""
    if path and (not path.startswith("/") or any(
        part in ("", ".", "..") or (part == "zookeeper" and i == 0)
        for i, part in enumerate(path[1:].split("/"))
    )):
        raise ConfigError(
            f"{what} {value!r} is not a usable ZooKeeper path; write it like /apps/tenure "
            "(no empty, '.' or '..' segments, not under /zookeeper)"
        )
    return path


class _Bell:
    """A watch callback that wakes waiters; counts real notifications for its store."""

    def __init__(self, store: ZooKeeperStore) -> None:
        self._store = store
        self._cond = threading.Condition()
        self.rings = 0
        self.watch: Callable[[WatchedEvent], None] = self._watch  # one object: kazoo dedupes

    def _watch(self, event: WatchedEvent) -> None:
        if event.type != EventType.NONE:
            self._store._count_notification()
        self.ring()

    def ring(self) -> None:
        with self._cond:
            self.rings += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Returns once rung after ``seen`` was read, or after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.rings != seen, max(0.0, timeout))


class ZooKeeperStore(Store):
    """The contract over a ZooKeeper ensemble, through one kazoo session."""

    limits = StoreLimits(min_ttl=0.4, max_ttl=3600.0)
    """Static bounds; each server bounds the session timeout further (default 2-20 x
    its tickTime), which :meth:`open_session` checks."""

    def __init__(
        self,
        hosts: str,
        root: str,
        description: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__()
        self._hosts = hosts
        self._root = root
        self._description = description
        self._auth = auth
        self._acl = CREATOR_ALL_ACL if auth else OPEN_ACL_UNSAFE
        self._connect_timeout = timeout
        self._call_timeout = timeout
        self._ttl = 0.0
        self._lock = threading.Condition()
        self._start_lock = threading.Lock()
        self._zk: KazooClient | None = None
        self._zk_timeout_ms = 0
        self._negotiated_ms = 0
        self._session_id: int | None = None
        self._parents: set[str] = set()
        self._leading: dict[str, Ticket] = {}
        self._orphans: set[tuple[str, str]] = set()  # (election node, guid) to delete
        self._observer_bells: dict[str, _Bell] = {}
        self._closed = False
        self.notifications = 0
        """Watch notifications received (not counting connection-state events)."""
        self.renewal_requests = 0
        """Renewal round trips sent (one per ``renew_session``)."""

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> ZooKeeperStore:
        unknown = sorted(set(url.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for the zookeeper backend; "
                f"known options: {', '.join(sorted(OPTIONS))} (plus ttl and drift)"
                + ("; the session timeout IS the TTL: use ttl=" if "session_timeout" in unknown
                   else "")
            )
        root = _check_path(url.path, "the URL path") + _check_path(
            url.options.get("prefix", DEFAULT_PREFIX), "option prefix"
        )
        if not root:
            raise ConfigError("option prefix must not be '/'; give a node such as /tenure")
        timeout = _parse_timeout(url.options.get("timeout"))
        auth = _digest_auth(url)
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.hosts)
        return cls(hosts, root, url.redacted, auth=auth, timeout=timeout)

    @property
    def description(self) -> str:
        return self._description

    # -- kazoo client and calls -----------------------------------------------------

    def _client(self) -> KazooClient:
        """The started kazoo client (started for reading if no session was opened)."""
        with self._start_lock:
            if self._closed:
                raise StoreUnavailable(f"{self._description}: this store is closed")
            return self._zk or self._start(OBSERVER_SESSION_MS)

    def _start(self, session_ms: int) -> KazooClient:
        """Starts a kazoo client asking for ``session_ms``. The caller holds
        ``_start_lock`` (never ``_lock``: kazoo's state listener takes that one)."""
        zk = KazooClient(
            hosts=self._hosts,
            timeout=session_ms / 1000,
            auth_data=[("digest", f"{self._auth[0]}:{self._auth[1]}")] if self._auth else None,
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                              "max_jitter": 0.05, "max_delay": 1.0},
        )
        self._record_negotiated_timeout(zk)
        zk.add_listener(self._on_state)
        try:
            zk.start(timeout=self._connect_timeout)
        except KazooTimeoutError:
            zk.close()
            raise StoreUnavailable(
                f"{self._description}: no ZooKeeper server answered within "
                f"{self._connect_timeout:g} s; check the hosts and that the ensemble has "
                "a quorum (or raise ?timeout=)"
            ) from None
        except KazooException as exc:
            zk.close()
            raise StoreUnavailable(f"{self._description}: cannot connect: {exc!r}") from None
        with self._lock:
            self._zk, self._zk_timeout_ms = zk, session_ms
        return zk

    def _record_negotiated_timeout(self, zk: KazooClient) -> None:
        """kazoo does not expose the session timeout the server granted; read it from
        each connect handshake's answer."""
        connection = zk._connection
        invoke = connection._invoke

        def recording_invoke(timeout: float, request: Any, xid: int | None = None) -> Any:
            result = invoke(timeout, request, xid)
            if isinstance(request, Connect):
                self._negotiated_ms = int(result[0].time_out)
            return result

        connection._invoke = recording_invoke

    def _stop_client(self) -> None:
        with self._lock:
            zk, self._zk = self._zk, None
            self._session_id = None
            self._leading.clear()
            self._lock.notify_all()
        if zk is not None:
            with contextlib.suppress(Exception):
                zk.stop()
            with contextlib.suppress(Exception):
                zk.close()

    def _call(self, start: Callable[..., Any], *args: Any, timeout: float | None = None,
              check: Callable[[], None] | None = None, **kwargs: Any) -> Any:
        """Runs a kazoo ``*_async`` call with a timeout. ZooKeeper errors about nodes
        (NoNodeError, ...) pass through; connection trouble is StoreUnavailable and an
        expired session SessionExpired. ``check`` is called every WAIT_SLICE while
        waiting (it raises to give up: a cancelled or timed-out campaign)."""
        wait = self._call_timeout if timeout is None else timeout
        try:
            pending = start(*args, **kwargs)
            if check is not None:
                end = time.monotonic() + wait
                while not pending.ready() and time.monotonic() < end:
                    pending.wait(min(WAIT_SLICE, max(0.0, end - time.monotonic())))
                    check()
            return pending.get(timeout=0 if check is not None else wait)
        except SessionExpiredError:
            raise SessionExpired(
                f"{self._description}: the ZooKeeper session expired"
            ) from None
        except KazooTimeoutError:
            raise StoreUnavailable(
                f"{self._description}: no answer within {wait:g} s"
            ) from None
        except (ConnectionLoss, ConnectionClosedError) as exc:
            raise StoreUnavailable(f"{self._description}: connection lost ({exc!r})") from None
        except NoAuthError:
            raise ConfigError(
                f"{self._description}: ZooKeeper refused access to a node under "
                f"{self._root} (ACL); connect with the digest credentials that created it"
            ) from None

    def _count_notification(self) -> None:
        with self._lock:
            self.notifications += 1

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> None:
        session_ms = math.ceil(ttl * 1000)
        with self._start_lock:
            if self._closed:
                raise StoreUnavailable(f"{self._description}: this store is closed")
            if self._zk is not None and self._zk_timeout_ms != session_ms:
                self._stop_client()  # a reading client asked for another timeout
            zk = self._zk or self._start(session_ms)
        self._ttl = ttl
        self._call_timeout = min(self._connect_timeout, ttl)
        if not zk.connected:
            self._wait_connected(time.monotonic() + self._connect_timeout)
        negotiated = self._negotiated_ms
        if negotiated != session_ms:
            self._stop_client()
            bound = "at most" if negotiated < session_ms else "at least"
            raise ConfigError(
                f"TTL {ttl:g} s: the ZooKeeper server at {self._description} granted a "
                f"session timeout of {negotiated / 1000:g} s instead (it allows {bound} "
                f"{negotiated / 1000:g} s: its minSessionTimeout/maxSessionTimeout, by "
                "default 2-20 x tickTime); choose a TTL in the server's range, or change "
                "the servers' tickTime or min/maxSessionTimeout"
            )
        with self._lock:
            self._session_id = zk._session_id
            self._lock.notify_all()

    def _wait_connected(self, until: float, cancelled: threading.Event | None = None) -> None:
        """Waits (on state changes, no polling) until kazoo is connected."""
        with self._lock:
            while not (self._zk is not None and self._zk.connected):
                if cancelled is not None and cancelled.is_set():
                    return
                left = until - time.monotonic()
                if left <= 0 or self._closed:
                    raise StoreUnavailable(
                        f"{self._description}: not connected to any ZooKeeper server"
                    )
                self._lock.wait(min(left, WAIT_SLICE))

    def _current_session(self) -> int | None:
        zk = self._zk
        return None if zk is None else zk._session_id  # kazoo keeps it while SUSPENDED

    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        zk = self._zk
        session = self._session_id
        if zk is None or session is None or self._current_session() != session:
            raise SessionExpired(f"{self._description}: the ZooKeeper session ended")
        with self._lock:
            self.renewal_requests += 1
        # One round trip through the ensemble leader, with a timeout well inside TTL/3.
        self._call(zk.sync_async, self._root or "/", timeout=self._ttl / 4)
        if self._current_session() != session:
            raise SessionExpired(f"{self._description}: the ZooKeeper session expired")
        if self._orphans:
            threading.Thread(target=self._sweep_orphans, daemon=True).start()
        return frozenset()

    def close_session(self) -> None:
        with self._lock:
            self._leading.clear()
        self._stop_client()  # kazoo's stop() closes the session: ephemerals go at once

    def _on_state(self, state: str) -> None:
        """kazoo state listener (runs on kazoo's connection thread: must not block)."""
        with self._lock:
            self._lock.notify_all()
            bells = list(self._observer_bells.values())
        if state == KazooState.CONNECTED:
            for bell in bells:
                bell.ring()
            threading.Thread(target=self._after_reconnect, daemon=True).start()
        elif state == KazooState.LOST:
            with self._lock:
                lost = list(self._leading.values())
                self._leading.clear()
            if lost:
                threading.Thread(
                    target=self._report, args=(lost, "the ZooKeeper session expired"),
                    daemon=True,
                ).start()

    def _report(self, tickets: list[Ticket], reason: str) -> None:
        for ticket in tickets:
            self._report_loss(ticket, reason)

    def _after_reconnect(self) -> None:
        """Watches set before a disconnect may have missed events: re-read."""
        with self._lock:
            leading = list(self._leading.items())
        for path, ticket in leading:
            try:
                self._watch_own(path, ticket)
            except StoreUnavailable:
                return  # disconnected again: the next reconnect re-checks
        self._sweep_orphans()

    def _watch_own(self, path: str, ticket: Ticket) -> None:
        """Arms a watch on our leading node; reports the loss if it is gone."""
        zk = self._zk
        if zk is None:
            return

        def watch(event: WatchedEvent) -> None:
            if event.type == EventType.NONE:
                return  # disconnected: _after_reconnect re-arms
            self._count_notification()
            if event.type == EventType.CHANGED:  # our own proclaim: re-arm
                threading.Thread(
                    target=self._rewatch, args=(path, ticket), daemon=True
                ).start()
            else:
                self._gone(path, ticket)

        if self._call(zk.exists_async, path, watch) is None:
            self._gone(path, ticket)

    def _rewatch(self, path: str, ticket: Ticket) -> None:
        with contextlib.suppress(StoreUnavailable):
            self._watch_own(path, ticket)

    def _gone(self, path: str, ticket: Ticket) -> None:
        with self._lock:
            if self._leading.pop(path, None) is None:
                return  # withdrawn by us, or already reported
        self._report_loss(
            ticket,
            "its ZooKeeper node was deleted (session expired, or removed by another client)",
        )

    # -- candidates -----------------------------------------------------------------

    def _election_node(self, election: str) -> str:
        return f"{self._root}/elections/{_component(election)}"

    def _ensure(self, zk: KazooClient, path: str) -> None:
        if path not in self._parents:
            self._call(zk.ensure_path_async, path, self._acl)
            self._parents.add(path)

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        zk = self._client()
        parent = self._election_node(election)
        guid = uuid.uuid4().hex
        data = candidate_id.encode() + b"\n" + value
        for attempt in range(2):
            self._ensure(zk, parent)
            created = zk.create_async(
                f"{parent}/c-{guid}-", data, self._acl, ephemeral=True, sequence=True,
                include_data=True,
            )
            try:
                path, stat = self._call(lambda pending=created: pending)
            except NoNodeError:  # someone deleted the election node: recreate it
                self._parents.discard(parent)
                if attempt:
                    raise StoreUnavailable(
                        f"{self._description}: election node {parent} keeps vanishing"
                    ) from None
                continue
            except StoreUnavailable:
                # The create may still happen (late, or done before the answer was lost):
                # remember the guid so the node is found and removed, never left to lead.
                self._orphan(created, parent, guid)
                raise
            break
        return Ticket(
            election, candidate_id, path, _sequence(path),
            {"token": stat.czxid, "owner": stat.ephemeralOwner, "guid": guid},
        )

    def _orphan(self, created: Any, parent: str, guid: str) -> None:
        with self._lock:
            self._orphans.add((parent, guid))

        def finished(result: Any) -> None:
            # A late create's answer: delete it (on a worker thread, never blocking kazoo).
            if result.successful():
                threading.Thread(target=self._sweep_orphans, daemon=True).start()

        created.rawlink(finished)

    def _sweep_orphans(self) -> None:
        """Deletes candidate nodes we may have left behind (failed enqueue/withdraw)."""
        with self._lock:
            orphans = list(self._orphans)
        zk = self._zk
        if zk is None:
            return
        for parent, guid in orphans:
            try:
                children = self._call(zk.get_children_async, parent)
                for child in children:
                    if child.startswith(f"c-{guid}-"):
                        with contextlib.suppress(NoNodeError):
                            self._call(zk.delete_async, f"{parent}/{child}")
            except NoNodeError:
                pass
            except StoreUnavailable:
                continue
            with self._lock:
                self._orphans.discard((parent, guid))

    def withdraw(self, ticket: Ticket) -> None:
        with self._lock:
            self._leading.pop(ticket.key, None)
        ticket.extra["led"] = False
        try:
            self._call(self._client().delete_async, ticket.key)
        except NoNodeError:
            pass
        except StoreUnavailable:
            # Keep trying in the background (after a reconnect, on renewals): a node
            # left behind would lead for as long as this session lives.
            with self._lock:
                self._orphans.add((ticket.key.rsplit("/", 1)[0], str(ticket.extra["guid"])))
            raise

    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        bell = _Bell(self)
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in {ticket.election!r} cancelled")
            seen = bell.rings
            if ticket.extra["owner"] != self._session_id:
                self._await_new_session(ticket, deadline, cancelled)

            def check() -> None:
                if cancelled.is_set():
                    raise CampaignCancelled(f"campaign in {ticket.election!r} cancelled")
                if deadline is not None and time.monotonic() >= deadline:
                    raise CampaignTimeout(f"campaign in {ticket.election!r} timed out")

            try:
                if self._turn(ticket, bell, check):
                    return self._lead(ticket)
            except SessionExpired:
                raise
            except StoreUnavailable:
                # A store-node failover: keep our place, wait for a reconnect.
                with contextlib.suppress(StoreUnavailable):
                    self._wait_connected(self._slice_end(deadline), cancelled)
                seen = -1  # re-read at once
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise CampaignTimeout(f"campaign in {ticket.election!r} timed out")
            if seen != -1:
                bell.wait(seen, self._slice_end(deadline) - now)

    @staticmethod
    def _slice_end(deadline: float | None) -> float:
        end = time.monotonic() + WAIT_SLICE
        return end if deadline is None else min(end, deadline)

    def _await_new_session(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> None:
        """The ticket's session is not the one the core renews (kazoo replaced an
        expired session): wait until the core opens its new one, then give up."""
        with self._lock:
            while self._session_id in (None, ticket.extra["owner"]) and not (
                cancelled.is_set() or (deadline is not None and time.monotonic() >= deadline)
            ):
                self._lock.wait(WAIT_SLICE)
        raise SessionExpired(
            f"the entry of {ticket.candidate_id} in {ticket.election!r} belongs to an "
            "expired ZooKeeper session"
        )

    def _turn(self, ticket: Ticket, bell: _Bell, check: Callable[[], None]) -> bool:
        """True if ``ticket`` leads; else arms ``bell`` on the predecessor's node."""
        zk = self._client()
        parent, mine = ticket.key.rsplit("/", 1)
        try:
            children = self._call(zk.get_children_async, parent, check=check)
        except NoNodeError:
            children = []
        if mine not in children:
            raise SessionExpired(
                f"the entry of {ticket.candidate_id} in {ticket.election!r} is gone "
                "(its session expired or it was deleted)"
            )
        lower = [c for c in children if _sequence(c) < ticket.order]
        if not lower:
            stat = self._call(zk.exists_async, ticket.key, check=check)
            if stat is None or stat.ephemeralOwner != self._session_id:
                raise SessionExpired(
                    f"the entry of {ticket.candidate_id} in {ticket.election!r} is not "
                    "bound to this client's current session"
                )
            return True
        predecessor = max(lower, key=_sequence)
        if self._call(zk.exists_async, f"{parent}/{predecessor}", bell.watch,
                      check=check) is None:
            bell.ring()  # gone already: look again at once
        return False

    def _lead(self, ticket: Ticket) -> int:
        ticket.extra["led"] = True
        with self._lock:
            self._leading[ticket.key] = ticket
        with contextlib.suppress(StoreUnavailable):
            self._watch_own(ticket.key, ticket)  # else re-armed after the reconnect
        return int(str(ticket.extra["token"]))

    def _require_led(self, ticket: Ticket, action: str) -> None:
        if not ticket.extra.get("led"):
            raise NotLeader(
                f"{action} refused: {ticket.candidate_id} does not lead election "
                f"{ticket.election!r}"
            )

    def _refused(self, ticket: Ticket, action: str) -> NotLeader:
        return NotLeader(
            f"{action} refused by ZooKeeper: the node of {ticket.candidate_id} in election "
            f"{ticket.election!r} is gone, so it no longer leads"
        )

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        self._require_led(ticket, "proclaim")
        data = ticket.candidate_id.encode() + b"\n" + value
        try:
            self._call(self._client().set_async, ticket.key, data)
        except NoNodeError:
            raise self._refused(ticket, "proclaim") from None

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        self._require_led(ticket, "guarded write")
        zk = self._client()
        data_node = f"{self._root}/data/{_component(key)}"
        self._ensure(zk, f"{self._root}/data")
        for _ in range(5):
            for create in (False, True):
                tx = zk.transaction()
                tx.check(ticket.key, -1)  # our node exists <=> we still lead
                if create:
                    tx.create(data_node, value, self._acl)
                else:
                    tx.set_data(data_node, value)
                results = self._call(tx.commit_async)
                if isinstance(results[0], NoNodeError):
                    raise self._refused(ticket, "guarded write")
                outcome = results[1]
                if not isinstance(outcome, Exception):
                    return
                if not isinstance(outcome, NoNodeError | NodeExistsError):
                    raise StoreUnavailable(f"{self._description}: guarded write: {outcome!r}")
        raise StoreUnavailable(f"{self._description}: guarded write kept racing on {key!r}")

    def read(self, key: str) -> bytes | None:
        zk = self._client()
        self._call(zk.sync_async, self._root or "/")
        try:
            data, _stat = self._call(zk.get_async, f"{self._root}/data/{_component(key)}")
        except NoNodeError:
            return None
        return bytes(data)

    # -- observing ------------------------------------------------------------------

    def _read_leader(self, election: str, bell: _Bell | None) -> LeaderInfo | None:
        """The leader after a ``sync``; with ``bell``, armed to ring on the next change
        (the leader's node changing or going, or a first candidate arriving)."""
        zk = self._client()
        parent = self._election_node(election)
        self._call(zk.sync_async, parent)
        while True:
            watch = bell.watch if bell is not None else None
            try:
                children = self._call(zk.get_children_async, parent)
            except NoNodeError:
                if bell is not None and self._call(zk.exists_async, parent, watch) is not None:
                    continue
                return None
            if not children:
                if bell is not None:
                    self._call(zk.get_children_async, parent, watch)
                    if self._call(zk.get_children_async, parent):
                        continue
                return None
            lowest = min(children, key=_sequence)
            try:
                data, stat = self._call(zk.get_async, f"{parent}/{lowest}", watch)
            except NoNodeError:
                continue
            candidate, _, value = bytes(data).partition(b"\n")
            return LeaderInfo(election, candidate.decode(), value, int(stat.czxid))

    def leader(self, election: str) -> LeaderInfo | None:
        return self._read_leader(election, None)

    def contenders(self, election: str) -> list[Contender]:
        zk = self._client()
        parent = self._election_node(election)
        try:
            self._call(zk.sync_async, parent)
            children = self._call(zk.get_children_async, parent)
        except NoNodeError:
            return []
        found = []
        for child in sorted(children, key=_sequence):
            try:  # a node may go between the listing and its read: it is not live then
                data, stat = self._call(zk.get_async, f"{parent}/{child}")
            except NoNodeError:
                continue
            candidate, _, value = bytes(data).partition(b"\n")
            found.append(Contender(candidate.decode(), value, int(stat.czxid)))
        return found

    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        with self._lock:
            bell = self._observer_bells.setdefault(election, _Bell(self))
        while True:
            seen = bell.rings
            current = self._read_leader(election, bell)
            now = time.monotonic()
            if current != known or now >= deadline:
                return current
            bell.wait(seen, deadline - now)

    # -- plumbing -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
        self._stop_client()
        with self._lock:
            self._closed = True
            self._lock.notify_all()


def _parse_timeout(text: str | None) -> float:
    if text is None:
        return DEFAULT_TIMEOUT
    return parse_duration_option("zookeeper", "timeout", text, 0.0, 300.0)


def _digest_auth(url: BackendURL) -> tuple[str, str] | None:
    """(user, password) for digest auth, or None. The password comes from the URL,
    ``digest_password_file`` or ``$TENURE_ZOOKEEPER_DIGEST_PASSWORD``; it never
    appears in messages."""
    user = url.options.get("digest_user")
    if user is not None and url.username is not None and user != url.username:
        raise ConfigError(
            "the URL names two different digest users (user@ and digest_user=); give one"
        )
    user = user if user is not None else url.username
    sources: list[tuple[str, str]] = []
    if url.password is not None:
        sources.append(("the URL", url.password))
    password_file = url.options.get("digest_password_file")
    if password_file is not None:
        try:
            secret = Path(password_file).expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"option digest_password_file={password_file!r} cannot be read "
                f"({exc.strerror}); check the path and its permissions"
            ) from None
        sources.append(("digest_password_file", secret))
    if not sources and user is not None and os.environ.get(PASSWORD_ENV):
        sources.append((PASSWORD_ENV, os.environ[PASSWORD_ENV]))
    if len(sources) > 1:
        raise ConfigError(
            f"the digest password is given twice ({' and '.join(s for s, _ in sources)}); "
            "give it once"
        )
    if user is None:
        if sources:
            raise ConfigError(
                "a digest password is given without a user; add digest_user=NAME"
            )
        return None
    if not user or ":" in user:
        raise ConfigError(f"digest user {user!r} must be non-empty and contain no ':'")
    if not sources or not sources[0][1]:
        raise ConfigError(
            f"digest user {user!r} has no password; put it in a file named by "
            f"digest_password_file=, in ${PASSWORD_ENV}, or in the URL"
        )
    return user, sources[0][1]


__all__ = ["ZooKeeperStore"]
