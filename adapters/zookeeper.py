"""The ZooKeeper backend: ``zookeeper://host:port[,host:port...][/path][?options]``.

    client = tenure.connect("zookeeper://10.0.0.5:2181,10.0.0.6:2181/apps?prefix=/tenure",
                            ttl=4)
    with client.election("jobs/nightly").campaign() as lead: ...

Mapping of the contract (kazoo, ZooKeeper 3.5+; options and the kazoo client are in
:mod:`tenure.adapters.zookeeper_connection`):

* session: ONE kazoo session per store, its timeout = the TTL (whole milliseconds,
  rounded up); every candidate node is ephemeral, bound to it. Renewal is one ``sync``
  round trip, whatever the number of elections. The server bounds session timeouts
  (default 2-20 x tickTime) and silently changes a request outside: the negotiated
  timeout is checked after connecting, a mismatch is a ConfigError.
* candidates: ephemeral sequential nodes ``<root>/elections/<name>/c-<guid>-<seq>``
  (data: candidate id, newline, value); ``<root>`` is the URL path plus ``prefix``
  (default ``/tenure``). Election nodes are never deleted, so sequences never reset.
* fencing token: the node's ``czxid``: ensemble-wide, 64-bit, strictly increasing, kept
  across restarts and failover, and -- unlike the sequence -- not restarted if someone
  deletes the election node. A later candidate has a higher czxid.
* ``try_lead``: ``get_children`` on our server; the lowest sequence leads. The read is not
  stale in the dangerous direction: transactions apply in zxid order and a session reads
  its own writes, so every node created before ours is visible once ours is; a stale
  read can only show a predecessor that is already gone. If ours is the lowest we check,
  as Curator does since its two-leaders bug, that its ``ephemeralOwner`` is the session
  we renew, and watch it. Else the Signal is a data watch on ONLY the predecessor (no
  herd). Every signal also fires on each connection state change: while disconnected
  ``try_lead`` reads nothing and waits for the reconnect, then reads again (watches do
  not replay what happened meanwhile). Our node gone or owned by another session (kazoo
  replaced an expired one) is SessionExpired; so is an ``enqueue`` landing in a session
  we did not open -- the core then opens the session again.
* ``observe_step``: ``sync``, the lowest child and a data watch on it (a child watch while
  the election is empty): it fires when the leader's node changes or goes.
* why one node's existence is leadership: once ours is the lowest no lower one can
  appear, so "our node exists" is "we lead". Proclaim is ``set_data`` on it; a guarded
  write is one multi-op ``check(our node) + set/create <root>/data/<key>``. Our node's
  exact path (guid and sequence) can never be created again.
* loss: the watch on our leading node reports its deletion; kazoo LOST (session expired)
  reports every leading node once, and renewals raise SessionExpired. SUSPENDED is not a
  loss: renewals fail and the core's validity deadline decides. A create or delete whose
  answer was lost is remembered; its node is deleted once the store answers again.
* ACLs: with digest credentials (``digest_user`` and the password from exactly one of the
  URL, ``digest_password_file`` or ``$TENURE_ZOOKEEPER_DIGEST_PASSWORD``) every node is
  creator-all: others can neither read nor delete candidates. Without them the ACL is
  open: anyone reaching the ensemble can delete a leader's node (the leader sees the loss).

Clock reasoning. A ``sync`` sent at ``t`` that succeeds was received at or after ``t``;
the server resets the session's expiry on every request and expires it only after the
session timeout (= TTL) without one, rounded UP to its next tick. So the session lives
until at least ``t + TTL``. ZooKeeper never revives an expired session (a reconnect
with it is refused); kazoo then makes a new one, which ``renew_session`` reports as
SessionExpired. kazoo moves from one session to the next only forward, so the session
current at a ``sync``'s answer is the one it went on. :meth:`open_session` sends a
``sync`` too: a session kazoo made after an expiry may have been touched last before
the core's send time.

Limits: in an ensemble a follower relays its sessions' touches to the leader every
tickTime/2, so the leader's record may be that much older than our send time: choose
``drift >= tickTime / (2 x TTL)`` if it matters (tickTime=200 ms, TTL=4 s: 0.025). An
election node's sequence counter is a signed 32-bit integer. kazoo considers a
connection dead after 2/3 of the session timeout without an answer and tries the next
server. ``leader``, ``contenders``, ``read`` and ``observe_step`` read after a ``sync``:
ZooKeeper's strongest read, not a quorum read.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

from tenure.adapters.zookeeper_connection import ZooKeeperConfig, ZooKeeperConnection, parse_url
from tenure.config import BackendURL
from tenure.errors import NotLeader, SessionExpired, StoreUnavailable
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


def _component(name: str) -> str:
    """An election name or key as ONE znode name (``/`` escaped, never ``.``/``..``)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _sequence(node: str) -> int:
    return int(node.rsplit("-", 1)[1])


def _parse(data: bytes) -> tuple[str, bytes]:
    candidate, _, value = bytes(data).partition(b"\n")
    return candidate.decode(), value


@dataclass(eq=False)
class ZooKeeperTicket(Ticket):
    """A candidate node: ``key`` is its path, ``order`` its sequence, ``token`` its
    czxid, ``owner`` the session that created it, ``guid`` its name's unique part."""

    token: int = 0
    owner: int = 0
    guid: str = ""


class _Bell:
    """ONE kazoo watch callback per election (kazoo keeps a callback once per path, so
    re-arming never stacks watches); it fires every signal armed on it."""

    def __init__(self, store: ZooKeeperStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._signals: set[EventSignal] = set()

    def arm(self) -> EventSignal:
        signal = EventSignal(on_close=lambda: self._discard(signal))
        with self._lock:
            self._signals.add(signal)
        return signal

    def _discard(self, signal: EventSignal) -> None:
        with self._lock:
            self._signals.discard(signal)

    def watch(self, event: WatchedEvent) -> None:
        if event.type != EventType.NONE:  # NONE: kazoo dropping its watches on a disconnect
            self._store._count_notification()
        self.ring()

    def ring(self) -> None:
        with self._lock:
            signals = list(self._signals)
        for signal in signals:
            signal.fire()


class ZooKeeperStore(Store[ZooKeeperTicket]):
    """The contract over a ZooKeeper ensemble, through one kazoo session."""

    limits = StoreLimits(min_ttl=0.4, max_ttl=3600.0)
    """Static bounds; each server bounds the session timeout further (default 2-20 x
    its tickTime), which :meth:`open_session` checks."""

    def __init__(self, config: ZooKeeperConfig) -> None:
        super().__init__()
        self.config = config
        self._root = config.root
        self._acl = CREATOR_ALL_ACL if config.auth else OPEN_ACL_UNSAFE
        self._conn = ZooKeeperConnection(config, self._on_state)
        self._call = self._conn.call
        self._ttl = 0.0
        self._lock = threading.Lock()  # also taken by kazoo's state listener
        self._sweeping = threading.Lock()
        self._session_id: int | None = None
        self._parents: set[str] = set()
        self._bells: dict[str, _Bell] = {}
        self._leading: dict[str, ZooKeeperTicket] = {}
        self._orphans: set[tuple[str, str]] = set()  # (election node, guid) to delete
        self.notifications = 0
        """Watch notifications received (not counting connection-state events)."""
        self.renewal_requests = 0
        """Renewal round trips sent (one per ``renew_session``)."""

    @classmethod
    def from_url(cls, url: BackendURL) -> ZooKeeperStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    def _client(self) -> KazooClient:
        return self._conn.client()

    def _count_notification(self) -> None:
        with self._lock:
            self.notifications += 1

    def _bell(self, election: str) -> _Bell:
        with self._lock:
            return self._bells.setdefault(election, _Bell(self))

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        session = self._conn.open(ttl)
        self._ttl = ttl
        with self._lock:
            self._session_id = session
            self._leading = {k: t for k, t in self._leading.items() if t.owner == session}
        return ttl

    def renew_session(self, held: frozenset[ZooKeeperTicket]) -> None:
        zk, session = self._conn.current, self._session_id
        if zk is None or session is None:
            raise SessionExpired(f"{self.description}: the ZooKeeper session ended")
        with self._lock:
            self.renewal_requests += 1
        if self._conn.touch(zk, timeout=self._ttl / 4) != session:  # well inside TTL/3
            raise SessionExpired(f"{self.description}: the ZooKeeper session expired")
        with self._lock:  # nodes seen gone, perhaps before the core marked the ticket won
            gone = [t for t in held if self._leading.get(t.key) is not t and not t.withdrawn]
        for ticket in gone:
            self.report_loss(ticket, "its ZooKeeper node was deleted")
        if self._orphans:
            threading.Thread(target=self._sweep_orphans, daemon=True).start()

    def close_session(self) -> None:
        with self._lock:
            self._session_id = None
            self._leading.clear()  # before stop(): its LOST must report nothing
        self._conn.stop()  # kazoo's stop() closes the session: ephemerals go at once

    def _on_state(self, state: str) -> None:
        """kazoo's state listener (on its connection thread: must not block)."""
        with self._lock:
            bells = list(self._bells.values())
            lost = list(self._leading.values()) if state == KazooState.LOST else []
            if lost:
                self._leading.clear()
        for bell in bells:  # every waiter and observer steps again, so reads again
            bell.ring()
        if state == KazooState.CONNECTED:
            threading.Thread(target=self._after_reconnect, daemon=True).start()
        if lost:  # the core's reporter runs on_lost callbacks: not on kazoo's thread
            threading.Thread(target=self._report, args=(lost,), daemon=True).start()

    def _report(self, tickets: list[ZooKeeperTicket]) -> None:
        for ticket in tickets:
            self.report_loss(ticket, "the ZooKeeper session expired")

    def _after_reconnect(self) -> None:
        """Watches set before a disconnect may have missed events: re-read and re-arm."""
        with self._lock:
            leading = list(self._leading.values())
        with contextlib.suppress(StoreUnavailable):  # disconnected again: next time
            for ticket in leading:
                self._recheck_own(ticket)
            self._sweep_orphans()

    def _recheck_own(self, ticket: ZooKeeperTicket) -> None:
        zk = self._conn.current
        if zk is not None and self._watch_own(zk, ticket) is None:
            self._forget(ticket, "its ZooKeeper node was deleted")

    def _watch_own(self, zk: KazooClient, ticket: ZooKeeperTicket) -> Any:
        """Arms a watch on our leading node (deleted: a loss); returns its stat or None."""

        def watch(event: WatchedEvent) -> None:
            if event.type == EventType.NONE:
                return  # disconnected: _after_reconnect re-arms
            self._count_notification()
            if event.type == EventType.CHANGED:  # our own proclaim: re-arm
                threading.Thread(target=self._rewatch, args=(ticket,), daemon=True).start()
            else:
                self._forget(ticket, "its ZooKeeper node was deleted (session expired, or "
                             "removed by another client)")

        return self._call(zk.exists_async, ticket.key, watch)

    def _rewatch(self, ticket: ZooKeeperTicket) -> None:
        with contextlib.suppress(StoreUnavailable):
            self._recheck_own(ticket)

    def _forget(self, ticket: ZooKeeperTicket, loss: str = "") -> None:
        """Stops treating ``ticket`` as leading; reports ``loss`` if it still was."""
        with self._lock:
            if self._leading.get(ticket.key) is not ticket:
                return  # withdrawn by us, or already reported
            del self._leading[ticket.key]
        if loss:
            self.report_loss(ticket, loss)

    # -- candidates -----------------------------------------------------------------

    def _election_node(self, election: str) -> str:
        return f"{self._root}/elections/{_component(election)}"

    def _ensure(self, zk: KazooClient, path: str) -> None:
        if path not in self._parents:
            self._call(zk.ensure_path_async, path, self._acl)
            self._parents.add(path)

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> ZooKeeperTicket:
        zk = self._client()
        parent = self._election_node(election)
        guid = uuid.uuid4().hex
        for attempt in range(2):
            self._ensure(zk, parent)
            created = zk.create_async(f"{parent}/c-{guid}-", candidate_id.encode() + b"\n" + value,
                                      self._acl, ephemeral=True, sequence=True, include_data=True)
            try:
                path, stat = self._call(lambda pending=created: pending)
                break
            except NoNodeError:  # someone deleted the election node: recreate it
                self._parents.discard(parent)
                if attempt:
                    raise StoreUnavailable(
                        f"{self.description}: election node {parent} keeps vanishing") from None
            except StoreUnavailable:
                # The create may still happen (late, or done before the answer was lost):
                # remember the guid so the node is found and removed, never left to lead.
                with self._lock:
                    self._orphans.add((parent, guid))
                created.rawlink(self._late_create)
                raise
        if stat.ephemeralOwner != self._session_id:  # kazoo replaced our expired session
            with contextlib.suppress(StoreUnavailable, NoNodeError):
                self._call(zk.delete_async, path)
            raise SessionExpired(f"{self.description}: the ZooKeeper session expired")
        return ZooKeeperTicket(election, candidate_id, path, _sequence(path), token=stat.czxid,
                               owner=stat.ephemeralOwner, guid=guid)

    def _late_create(self, result: Any) -> None:
        if result.successful():  # sweep on a worker thread, never blocking kazoo's
            threading.Thread(target=self._sweep_orphans, daemon=True).start()

    def _sweep_orphans(self) -> None:
        """Deletes candidate nodes we may have left behind (failed enqueue/withdraw)."""
        zk = self._conn.current
        if zk is None or not self._sweeping.acquire(blocking=False):
            return  # one sweep at a time
        try:
            with self._lock:
                orphans = list(self._orphans)
            for parent, guid in orphans:
                with contextlib.suppress(NoNodeError):
                    for child in self._call(zk.get_children_async, parent):
                        if child.startswith(f"c-{guid}-"):
                            with contextlib.suppress(NoNodeError):
                                self._call(zk.delete_async, f"{parent}/{child}")
                with self._lock:
                    self._orphans.discard((parent, guid))
        except StoreUnavailable:
            pass  # the rest on the next reconnect or renewal
        finally:
            self._sweeping.release()

    def withdraw(self, ticket: ZooKeeperTicket) -> None:
        self._forget(ticket)
        try:
            self._call(self._client().delete_async, ticket.key)
        except NoNodeError:
            pass
        except StoreUnavailable:
            # Keep trying in the background (after a reconnect, on renewals): a node
            # left behind would lead for as long as this session lives.
            with self._lock:
                self._orphans.add((ticket.key.rsplit("/", 1)[0], ticket.guid))
            raise

    def try_lead(self, ticket: ZooKeeperTicket) -> Step:
        zk = self._client()
        bell = self._bell(ticket.election)
        signal = bell.arm()  # before the read; rung by the watch or a state change
        try:
            if self._turn(zk, ticket, bell, signal):
                signal.close()
                return Won(ticket.token)
        except BaseException:
            signal.close()
            raise
        return Wait(signal)

    def _turn(self, zk: KazooClient, ticket: ZooKeeperTicket, bell: _Bell,
              signal: EventSignal) -> bool:
        """True if ``ticket`` leads; else arms ``bell`` on the predecessor's node."""
        entry = f"the entry of {ticket.candidate_id} in {ticket.election!r}"
        if ticket.owner != self._session_id:
            raise SessionExpired(f"{entry} belongs to an expired ZooKeeper session")
        if not zk.connected:
            return False  # the reconnect rings the bell; then we read again
        parent, mine = ticket.key.rsplit("/", 1)
        try:
            children = self._call(zk.get_children_async, parent)
        except NoNodeError:
            children = []
        if mine not in children:
            raise SessionExpired(f"{entry} is gone (its session expired or it was deleted)")
        lower = [c for c in children if _sequence(c) < ticket.order]
        if lower:
            try:
                self._call(zk.get_async, f"{parent}/{max(lower, key=_sequence)}", bell.watch)
            except NoNodeError:
                signal.fire()  # gone already: look again at once
            return False
        with self._lock:
            self._leading[ticket.key] = ticket  # before the watch can see it go
        try:
            stat = self._watch_own(zk, ticket)
        except BaseException:
            self._forget(ticket)
            raise
        if stat is None or stat.ephemeralOwner != self._session_id:
            self._forget(ticket)
            raise SessionExpired(f"{entry} is not bound to this client's current session")
        return True

    def _require_led(self, ticket: ZooKeeperTicket, action: str) -> None:
        if not ticket.won or ticket.withdrawn:
            raise NotLeader(f"{action} refused: {ticket.candidate_id} does not lead election "
                            f"{ticket.election!r}")

    def _refused(self, ticket: ZooKeeperTicket, action: str) -> NotLeader:
        return NotLeader(f"{action} refused by ZooKeeper: the node of {ticket.candidate_id} "
                         f"in election {ticket.election!r} is gone, so it no longer leads")

    def proclaim(self, ticket: ZooKeeperTicket, value: bytes) -> None:
        self._require_led(ticket, "proclaim")
        data = ticket.candidate_id.encode() + b"\n" + value
        try:
            self._call(self._client().set_async, ticket.key, data)
        except NoNodeError:
            raise self._refused(ticket, "proclaim") from None

    def guarded_write(self, ticket: ZooKeeperTicket, key: str, value: bytes) -> None:
        self._require_led(ticket, "guarded write")
        zk = self._client()
        data_node = f"{self._root}/data/{_component(key)}"
        self._ensure(zk, f"{self._root}/data")
        for create in (False, True) * 5:  # the data node may come and go meanwhile
            tx = zk.transaction()
            tx.check(ticket.key, -1)  # our node exists <=> we still lead
            if create:
                tx.create(data_node, value, self._acl)
            else:
                tx.set_data(data_node, value)
            guard, outcome = self._call(tx.commit_async)
            if isinstance(guard, NoNodeError):
                raise self._refused(ticket, "guarded write")
            if not isinstance(outcome, Exception):
                return
            if not isinstance(outcome, NoNodeError | NodeExistsError):
                raise StoreUnavailable(f"{self.description}: guarded write: {outcome!r}")
        raise StoreUnavailable(f"{self.description}: guarded write kept racing on {key!r}")

    def read(self, key: str) -> bytes | None:
        zk = self._client()
        self._call(zk.sync_async, self._root)
        try:
            return bytes(self._call(zk.get_async, f"{self._root}/data/{_component(key)}")[0])
        except NoNodeError:
            return None

    # -- observing ------------------------------------------------------------------

    def _read_leader(self, election: str, bell: _Bell | None) -> LeaderInfo | None:
        """The leader after a ``sync``; with ``bell``, armed to ring on the next change
        (the leader's node changing or going, or a first candidate arriving)."""
        zk = self._client()
        parent = self._election_node(election)
        self._call(zk.sync_async, parent)
        watch = None if bell is None else bell.watch
        child_watch = None
        while True:
            try:
                children = self._call(zk.get_children_async, parent, child_watch)
            except NoNodeError:
                if watch is not None and self._call(zk.exists_async, parent, watch) is not None:
                    continue  # created in between
                return None
            if not children:
                if watch is None or child_watch is not None:
                    return None
                child_watch = watch  # look again, watching for a first candidate
                continue
            try:
                data, stat = self._call(zk.get_async, f"{parent}/{min(children, key=_sequence)}",
                                        watch)
            except NoNodeError:
                continue
            return LeaderInfo(election, *_parse(data), int(stat.czxid))

    def leader(self, election: str) -> LeaderInfo | None:
        return self._read_leader(election, None)

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        bell = self._bell(election)
        signal = bell.arm()
        try:
            return self._read_leader(election, bell), Wait(signal)
        except BaseException:
            signal.close()
            raise

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
            found.append(Contender(*_parse(data), int(stat.czxid)))
        return found

    def close(self) -> None:
        self.close_session()
        self._conn.close()


__all__ = ["ZooKeeperStore", "ZooKeeperTicket"]
