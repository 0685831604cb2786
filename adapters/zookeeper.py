"""The ZooKeeper backend: ``zookeeper://host:port[,host:port...][/path][?options]``.

    client = tenure.connect("zookeeper://10.0.0.5:2181,10.0.0.6:2181/apps", ttl=4)

Mapping of the contract (kazoo, ZooKeeper 3.5+; options and the kazoo client are in
:mod:`~tenure.adapters.zookeeper_connection`, signals and loss watches in
:mod:`~tenure.adapters.zookeeper_watches`):

* session: ONE kazoo session, timeout = TTL (ms, rounded up; servers silently clamp it,
  default 2-20 x tickTime, so the negotiated one is checked: a mismatch is a ConfigError).
  A renewal is one ``sync``, whatever the number of elections, and kazoo skips its own
  ping while renewals answer (one request per renewal period; see
  :class:`~tenure.adapters.zookeeper_connection.ZooKeeperConnection`). Not a ping
  instead: a follower answers pings alone, also while cut from the ensemble's leader,
  which expires the session meanwhile; a sync goes through that leader.
* candidate: ephemeral sequential ``<root>/elections/<name>/c-<guid>-<seq>`` (``<root>`` =
  URL path + ``prefix``; election nodes are never deleted). Token: its ``czxid`` --
  ensemble-wide, 64-bit, rising across restarts and failover, and unlike the sequence
  not reset if someone deletes the election node.
* ``try_lead``: ``get_children``; the lowest sequence leads. Not stale in the dangerous
  direction: transactions apply in zxid order and a session reads its own writes, so
  every node created before ours is visible once ours is (a stale read only shows a
  predecessor already gone) -- on a follower too, hence no ``sync``, as in kazoo's and
  Curator's recipes. Our node's owner is checked once, by ``enqueue`` (Curator's check
  since its two-leaders bug: the exact path is never created again, its owner never
  changes). Our node's own watch (its deletion is a loss while leading, and wakes a
  waiter) is armed by an ``exists`` sent with the listing once per connection (kazoo
  drops watches on a disconnect), so a step is ONE round trip and a waiter's wake-up
  step is the listing alone (plus the marker read below). Else the Signal is a data
  watch on ONLY the predecessor (no herd), set by a second request, as kazoo does.
  Our node gone or owned by another session (kazoo replaced an expired one) is
  SessionExpired, as is an ``enqueue`` landing in a session we did not open (the core
  then opens the session again).
* read with the win (``Ticket.read_on_win``, docs/design.md): that key's ``get`` rides
  with the listing in ONE ``multiRead`` request (ZooKeeper 3.6+, :mod:`~tenure.adapters.
  zookeeper_multiread`; two pipelined requests on older servers), with no ``sync``: the
  server runs a session's reads in order, so a listing with nothing below us proves it
  applied every lower node's deletion and, in zxid order, the marker written before it
  (see ``_send_reads``). So a waiter's wake-up is ONE request, as kazoo's.
* ``observe_step``: ``sync``, then a data watch on the lowest child (a child watch while
  the election is empty).
* leading = our node exists: once it is the lowest no lower one can appear, and its
  exact path (guid, sequence) is never created again. Proclaim is ``set_data`` on it, a
  guarded write one ``check(our node) + set/create <root>/data/<key>`` multi-op; refused,
  either is NotLeader (the core marks the loss).
* loss: the watch on a leading node reports its deletion; kazoo LOST reports every
  leading node once and renewals raise SessionExpired. SUSPENDED is not a loss (renewals
  fail; the core's validity deadline decides). kazoo drops every watch on a disconnect,
  so each state change fires every signal: a disconnected ``try_lead`` reads nothing and
  waits; after the reconnect everyone reads again and leading nodes are re-read and
  re-watched (ZooKeeper does not replay what happened meanwhile).
* orphans: a create whose answer was lost may have happened or may land late; its guid is
  remembered and its node deleted when the answer comes, after a reconnect or at a
  renewal (it would lead as long as the session lives). The core retries failed withdraws.
* ACLs: with digest credentials (``digest_user``; the password from exactly one of the
  URL, ``digest_password_file``, ``$TENURE_ZOOKEEPER_DIGEST_PASSWORD``) nodes are creator-all;
  without, anyone reaching the ensemble can delete a leader's node (it sees the loss).

Clock reasoning. A ``sync`` sent at ``t`` that succeeds was received at or after ``t``;
the server resets the session's expiry on each request and expires it only after the
timeout (= TTL) without one, rounded UP to a tick: the session lives until ``t + TTL`` at
least. ZooKeeper never revives an expired session; kazoo makes a new one, reported by
``renew_session`` as SessionExpired (kazoo moves between sessions only forward, so the
session current at a ``sync``'s answer is the one it went on). ``open_session`` syncs
too: a session kazoo made after an expiry may have been touched last before the core's
send time. On an ensemble "the server" is two: a follower touches the session when our
``sync`` arrives, but the ensemble's leader, which decides expiry, does not touch it for
the forwarded ``sync``; it learns the follower's touches from its next learner-ping reply
(every tickTime/2). A follower cut from the leader after answering, before that reply,
leaves the leader's last touch at the PREVIOUS request, the previous renewal (kazoo's
pings are skipped between renewals): the leader may expire the session at about
``t_prev + TTL``. So the store sets ``proof_lags_one_renewal``: the core counts validity
after a renewal from the previous successful renewal's send time (from
``open_session``'s for the first; creating a session is a write the leader processes
itself). Sound because this renewal's ``sync`` passed through the leader after it was
sent, so the link was up then, at least a renewal interval (TTL/3) after the previous
success; TTL/3 > tickTime/2 (the minimum session timeout is 2 ticks), so a learner ping
carried that earlier touch to the leader. Also on a single server (nothing tells the
client which it has): costs TTL/3 of validity, so a leader cut off from the store
steps down that much earlier; failover time (set by the store's expiry) is unchanged.

Layouts (``layout=``): ``tenure``, the default, is the mapping above; ``native`` writes
the nodes of Curator's ``LeaderSelector``/``InterProcessMutex`` (protected mode), so
tenure, Curator and kazoo's ``Lock``/``Election`` queue in ONE election (docs/interop.md).
The election name IS the recipe's path, under the URL path (``prefix`` then holds only
guarded-write data): nodes ``<path>/_c_<uuid>-lock-<seq>`` holding the value only, so the
node's owner -- its session id in hex, ``ephemeralOwner`` -- IS the candidate id (the
same for every election a client is in, as tenure's migration needs). Contenders are
the children ending in ``lock-`` or ``__lock__`` and ten digits -- kazoo's contender
pattern with ``extra_lock_patterns=["lock-"]``; Curator takes what follows the last
``lock-`` -- ordered by that sequence (one counter per parent, so arrival order);
other children (``latch-`` nodes, leases) are not candidates. Every step above is
already the recipes' (lowest leads, a waiter watches only its predecessor with a data
watch, ``ephemeralOwner`` checked); the token stays the czxid, which native nodes have.

Limits: the relay lag of a follower's touches (tickTime/2) is covered by
``proof_lags_one_renewal`` above, not by ``drift``, while TTL/3 exceeds it (always, with
the server's minimum session timeout of 2 ticks). Sequences are signed 32-bit. kazoo
drops a connection silent for 2/3 of the timeout and tries the next server. ``leader``,
``contenders``, ``read``, ``observe_step`` read after a ``sync``: ZooKeeper's strongest
read, not a quorum read (``read`` sends its ``get`` with the ``sync``, one round trip: a
session's requests are applied in order, a read held back behind that session's pending
``sync``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError, UnimplementedError
from kazoo.security import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

from tenure.adapters import zookeeper_multiread as multiread
from tenure.adapters.zookeeper_connection import ZooKeeperConfig, ZooKeeperConnection, parse_url
from tenure.adapters.zookeeper_watches import Watch, Watches, in_background
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

NATIVE_CONTENDER = re.compile(r"(?:__lock__|lock-)(-?\d{10})$")
"""A contender of the native layout: kazoo's pattern (``__lock__``) with Curator's lock
name (``lock-``, what kazoo's ``extra_lock_patterns`` adds), then ZooKeeper's sequence."""


def _component(name: str) -> str:
    """An election name or key as ONE znode name (``/`` escaped, never ``.``/``..``)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _sequence(node: str) -> int:
    return int(node.rsplit("-", 1)[1])


def _encode(candidate_id: str, value: bytes) -> bytes:
    return candidate_id.encode() + b"\n" + value


def _parse(data: bytes) -> tuple[str, bytes]:
    candidate, _, value = bytes(data).partition(b"\n")
    return candidate.decode(), value


def _native_sequence(node: str) -> int | None:
    """A native contender's sequence, or None for a child that is not one."""
    match = NATIVE_CONTENDER.search(node)
    return int(match.group(1)) if match else None


class _Part:
    """One op's answer of a pending :mod:`~tenure.adapters.zookeeper_multiread`, as
    ``get`` of a kazoo pending answer (an op's error is raised)."""

    def __init__(self, pending: Any, index: int) -> None:
        self._pending, self._index = pending, index

    def get(self, timeout: float | None = None) -> Any:
        found = self._pending.get(timeout=timeout)[self._index]
        if isinstance(found, Exception):
            raise found
        return found


@dataclass(eq=False)
class ZooKeeperTicket(Ticket):
    """A candidate node: ``key`` is its path, ``order`` its sequence, ``token`` its
    czxid, ``owner`` the session that created it, ``guid`` its name's unique part."""

    token: int = 0
    owner: int = 0
    guid: str = ""


class ZooKeeperStore(Store[ZooKeeperTicket]):
    """The contract over a ZooKeeper ensemble, through one kazoo session."""

    limits = StoreLimits(min_ttl=0.4, max_ttl=3600.0)
    """Static bounds; each server bounds the session timeout further (default 2-20 x
    its tickTime), which :meth:`open_session` checks."""

    proof_lags_one_renewal = True
    """A follower relays its touch for our ``sync`` to the ensemble's leader only in its
    next learner-ping reply: a renewal proves the previous one's send time (see "Clock
    reasoning" in the module docstring). Set on a single server too."""

    def __init__(self, config: ZooKeeperConfig) -> None:
        super().__init__()
        self.config = config
        self._root = config.root
        self._acl = CREATOR_ALL_ACL if config.auth else OPEN_ACL_UNSAFE
        self._conn = ZooKeeperConnection(config, self._on_state)
        self._call = self._conn.call
        self._watches = Watches(self._conn, lambda ticket, why: self.report_loss(ticket, why))
        self._ttl = 0.0
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()
        self._session_id: int | None = None
        self._parents: set[str] = set()
        self._orphans: set[tuple[str, str]] = set()  # (election node, guid) to delete
        self.renewal_requests = 0
        """Renewal round trips sent (one per ``renew_session``)."""
        self._multiread = True  # False once a server answered that it has none (< 3.6)
        self._early: dict[str, tuple[KazooClient, Any, Any]] = {}  # see _read_early

    @classmethod
    def from_url(cls, url: BackendURL) -> ZooKeeperStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    @property
    def notifications(self) -> int:
        """Watch notifications received (not counting connection-state events)."""
        return self._watches.notifications

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        session = self._conn.open(ttl, before_touch=self._probe_multiread)
        self._ttl, self._session_id = ttl, session
        self._watches.retain(session)
        return ttl

    def _probe_multiread(self, zk: KazooClient) -> None:
        """Learns whether the server has ``multiRead`` (3.6+) by an empty one, sent while
        the session holds no leadership yet: an older server answers Unimplemented (or
        drops the connection: the open is then retried, without multiRead)."""
        if self._multiread:
            try:
                self._conn.wait(multiread.send(zk, []))
            except (UnimplementedError, StoreUnavailable):
                log.info("%s: no multiRead (ZooKeeper < 3.6): separate reads",
                         self.description)
                self._multiread = False

    def renew_session(self, held: frozenset[ZooKeeperTicket]) -> None:
        zk, session = self._conn.current, self._session_id
        if zk is None or session is None:
            raise SessionExpired(f"{self.description}: the ZooKeeper session ended")
        with self._lock:
            self.renewal_requests += 1
        if self._conn.touch(zk, timeout=self._ttl / 4) != session:  # well inside TTL/3
            raise SessionExpired(f"{self.description}: the ZooKeeper session expired")
        self._watches.report_gone(held)
        if self._orphans:
            in_background(self._sweep_orphans)

    def close_session(self) -> None:
        self._session_id = None
        self._watches.retain(None)  # before stop(): its LOST must report nothing
        self._conn.stop()  # kazoo's stop() closes the session: ephemerals go at once

    def _on_state(self, state: str) -> None:
        """kazoo's state listener (on its connection thread: must not block)."""
        self._watches.state_changed(state)
        if state == KazooState.CONNECTED and self._orphans:
            in_background(self._sweep_orphans)

    # -- candidates -----------------------------------------------------------------

    def _election_node(self, election: str) -> str:
        if not self.config.native:
            return f"{self._root}/elections/{_component(election)}"
        parts = election.split("/")  # the recipe's path: its segments are real znodes
        if any(p in ("", ".", "..") for p in parts) or (
                not self.config.base and parts[0] == "zookeeper"):
            raise ConfigError(
                f"election {election!r} is not a usable ZooKeeper path under layout=native; "
                "name it like svc/leader (no empty, '.' or '..' segments, not under /zookeeper)")
        return f"{self.config.base}/{election}"

    def _node_prefix(self, guid: str) -> str:
        """The name of a candidate node before ZooKeeper's sequence."""
        return f"_c_{guid}-lock-" if self.config.native else f"c-{guid}-"

    def _ranked(self, children: list[str]) -> list[tuple[int, str]]:
        """(sequence, child) of each candidate among ``children``, lowest first."""
        if not self.config.native:
            return sorted((_sequence(c), c) for c in children)
        found = ((_native_sequence(c), c) for c in children)
        return sorted((seq, c) for seq, c in found if seq is not None)

    def _pack(self, candidate_id: str, value: bytes) -> bytes:
        """A node's data: the value alone in the native layout (Curator's participant id,
        kazoo's identifier), else the candidate id, LF, the value."""
        return value if self.config.native else _encode(candidate_id, value)

    def _unpack(self, data: bytes, stat: Any) -> tuple[str, bytes]:
        """(candidate id, value) of a node: native nodes store no id, their owning
        session (hex) stands for it."""
        return (f"{stat.ephemeralOwner:x}", bytes(data)) if self.config.native else _parse(data)

    def _ensure(self, zk: KazooClient, path: str) -> None:
        if path not in self._parents:
            self._call(zk.ensure_path_async, path, self._acl)
            self._parents.add(path)

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> ZooKeeperTicket:
        zk = self._conn.client()
        parent = self._election_node(election)
        guid = str(uuid.uuid4()) if self.config.native else uuid.uuid4().hex  # Curator's form
        for attempt in range(2):
            self._ensure(zk, parent)
            created = zk.create_async(f"{parent}/{self._node_prefix(guid)}",
                                      self._pack(candidate_id, value), self._acl,
                                      ephemeral=True, sequence=True, include_data=True)
            try:
                path, stat = self._conn.wait(created)
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
        if self.config.native:  # its id is what readers see of it: the owning session
            log.info("zookeeper layout=native: candidate %s is node %s of session %x",
                     candidate_id, path, stat.ephemeralOwner)
            return ZooKeeperTicket(election, f"{stat.ephemeralOwner:x}", path, _sequence(path),
                                   token=stat.czxid, owner=stat.ephemeralOwner, guid=guid)
        return ZooKeeperTicket(election, candidate_id, path, _sequence(path), token=stat.czxid,
                               owner=stat.ephemeralOwner, guid=guid)

    def _late_create(self, result: Any) -> None:
        if result.successful():  # sweep on a worker thread, never blocking kazoo's
            in_background(self._sweep_orphans)

    def _sweep_orphans(self) -> None:
        """Deletes candidate nodes of creates whose answer was lost (one sweep at a time)."""
        zk = self._conn.current
        if zk is None or not self._sweeping.acquire(blocking=False):
            return
        try:
            with self._lock:
                orphans = list(self._orphans)
            for parent, guid in orphans:
                with contextlib.suppress(NoNodeError):
                    for child in self._call(zk.get_children_async, parent):
                        if child.startswith(self._node_prefix(guid)):
                            with contextlib.suppress(NoNodeError):
                                self._call(zk.delete_async, f"{parent}/{child}")
                with self._lock:
                    self._orphans.discard((parent, guid))
        except StoreUnavailable:
            pass  # the rest on the next reconnect or renewal
        finally:
            self._sweeping.release()

    def withdraw(self, ticket: ZooKeeperTicket) -> None:
        self._watches.withdrawn(ticket)
        with self._lock:
            self._early.pop(ticket.key, None)
        with contextlib.suppress(NoNodeError):  # on a store error the core retries it
            self._call(self._conn.client().delete_async, ticket.key)

    def try_lead(self, ticket: ZooKeeperTicket) -> Step:
        with self._watches.armed(ticket.election) as signal:  # before the read
            won, marker = self._turn(ticket, signal)
        if won:
            signal.close()
            return Won(ticket.token, marker, read_done=ticket.read_on_win is not None)
        return Wait(signal)

    def _turn(self, ticket: ZooKeeperTicket, signal: EventSignal) -> tuple[bool, bytes | None]:
        """(True if ``ticket`` leads, the value of ``ticket.read_on_win`` then); else its
        predecessor's node is watched for ``signal``."""
        zk = self._conn.client()
        entry = f"the entry of {ticket.candidate_id} in {ticket.election!r}"
        if ticket.owner != self._session_id:
            raise SessionExpired(f"{entry} belongs to an expired ZooKeeper session")
        if not zk.connected:
            return False, None  # the reconnect fires the signal; then we read again
        parent, mine = ticket.key.rsplit("/", 1)
        # One round trip, like kazoo's Lock: the listing decides; sent with it, the marker
        # read and -- once per connection -- the exists arming our node's own watch (its
        # owner was checked by enqueue and never changes). Registered as leading first,
        # forgotten unless the listing says we lead.
        self._watches.lead(ticket)
        with self._lock:
            early = self._early.pop(ticket.key, None)
        listing, marker = (early[1:] if early is not None and early[0] is zk
                           else self._send_reads(zk, parent, ticket.read_on_win))
        own = (self._watches.arm_own_async(zk, ticket)
               if self._watches.needs_arming(ticket) else None)
        leads, value = False, None
        try:
            try:
                children = self._conn.wait(listing)
            except NoNodeError:
                children = []
            except UnimplementedError:  # a server before 3.6: no multiRead
                log.info("%s: no multiRead (ZooKeeper < 3.6): separate reads",
                         self.description)
                self._multiread = False
                listing, marker = self._send_reads(zk, parent, ticket.read_on_win)
                try:
                    children = self._conn.wait(listing)
                except NoNodeError:
                    children = []
            gone = mine not in children
            if own is not None:
                gone = self._conn.wait(own) is None or gone
            if gone or self._watches.seen_gone(ticket):
                raise SessionExpired(f"{entry} is gone (its session expired or it was deleted)")
            lower = [c for seq, c in self._ranked(children) if seq < ticket.order]
            if not lower and marker is not None:
                value = self._got(marker)
            leads = not lower
        finally:
            if not leads:
                self._watches.forget(ticket)
        if lower:
            predecessor = f"{parent}/{lower[-1]}"
            self._watches.park(ticket, predecessor, lambda: self._read_early(zk, ticket))
            try:
                self._call(zk.get_async, predecessor, self._watches.watch(ticket.election))
            except NoNodeError:
                self._watches.unpark(ticket)
                signal.fire()  # gone already: look again at once
            return False, None  # the marker's answer is not needed: not waited for
        return True, value

    def _read_early(self, zk: KazooClient, ticket: ZooKeeperTicket) -> None:
        """Sends the wake-up step's reads the moment the predecessor's deletion event
        arrives (on kazoo's callback thread, before the signal wakes the campaign), so
        the round trip overlaps the campaign thread's wake-up; its next step takes them
        (:meth:`_turn`). Safe to read before that step arms its signal: a Won needs
        only a listing sent after the deletion, and a Wait is decided again by the
        watch the step then sets (a predecessor already gone fires it)."""
        if ticket.withdrawn:
            return
        parent = ticket.key.rsplit("/", 1)[0]
        sent = self._send_reads(zk, parent, ticket.read_on_win)
        with self._lock:
            self._early[ticket.key] = (zk, *sent)
        time.sleep(0)  # yields the GIL: kazoo's connection thread sends before we ring

    def _send_reads(self, zk: KazooClient, parent: str, key: str | None) -> tuple[Any, Any]:
        """Sends the listing of ``parent`` and, if ``key`` is given (``read_on_win``),
        the ``get`` of that key right after it, as ONE ``multiRead`` request (ZooKeeper
        3.6+; two pipelined requests before); returns both pending answers (the
        marker's None without ``key``). No ``sync``: the server runs one session's
        reads in order, each against a state at least as new as the one before, so a
        listing with no node below ours proves that server applied the deletion of
        every lower node -- and, transactions being applied in zxid order, every write
        made before it, the marker a releasing leader writes first among them. That is
        the order ``read_on_win`` asks for, on a follower too (a sync would only add
        writes made after the release: a marker written later is a later leader's, and
        we lead now). kazoo's Election reads the listing alone."""
        if key is None:
            return zk.get_children_async(parent), None
        data = f"{self._root}/data/{_component(key)}"
        if not self._multiread:
            return zk.get_children_async(parent), zk.get_async(data)
        both = multiread.send(zk, [(multiread.GET_CHILDREN, parent), (multiread.GET_DATA, data)])
        return _Part(both, 0), _Part(both, 1)

    def _require_led(self, ticket: ZooKeeperTicket, action: str) -> None:
        if not ticket.won or ticket.withdrawn:
            raise NotLeader(f"{action} refused: {ticket.candidate_id} does not lead election "
                            f"{ticket.election!r}")

    def _refused(self, ticket: ZooKeeperTicket, action: str) -> NotLeader:
        return NotLeader(f"{action} refused by ZooKeeper: the node of {ticket.candidate_id} "
                         f"in election {ticket.election!r} is gone, so it no longer leads")

    def proclaim(self, ticket: ZooKeeperTicket, value: bytes) -> None:
        self._require_led(ticket, "proclaim")
        try:
            self._call(self._conn.client().set_async, ticket.key,
                       self._pack(ticket.candidate_id, value))
        except NoNodeError:
            raise self._refused(ticket, "proclaim") from None

    def guarded_write(self, ticket: ZooKeeperTicket, key: str, value: bytes) -> None:
        self._require_led(ticket, "guarded write")
        zk = self._conn.client()
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
        pending = self._read_async(self._conn.client(), key)
        assert pending is not None
        return self._answer(pending)

    def _read_async(self, zk: KazooClient, key: str | None) -> tuple[Any, Any] | None:
        """Sends a read of ``key`` (none if None): ``sync`` and ``get`` together (one round
        trip): the server keeps a session's requests in order and holds a read back
        behind that session's pending sync, so the get still sees everything committed
        before the sync."""
        if key is None:
            return None
        return zk.sync_async(self._root), zk.get_async(f"{self._root}/data/{_component(key)}")

    def _answer(self, pending: tuple[Any, Any]) -> bytes | None:
        synced, got = pending
        self._conn.wait(synced)
        return self._got(got)

    def _got(self, got: Any) -> bytes | None:
        try:
            return bytes(self._conn.wait(got)[0])
        except NoNodeError:
            return None

    # -- observing ------------------------------------------------------------------

    def _read_leader(self, election: str, watch: Watch | None) -> LeaderInfo | None:
        """The leader after a ``sync``; with ``watch``, set to fire on the next change
        (the leader's node changing or going, or a first candidate arriving)."""
        zk = self._conn.client()
        parent = self._election_node(election)
        self._call(zk.sync_async, parent)
        child_watch = None
        while True:
            try:
                children = self._call(zk.get_children_async, parent, child_watch)
            except NoNodeError:
                if watch is not None and self._call(zk.exists_async, parent, watch) is not None:
                    continue  # created in between
                return None
            ranked = self._ranked(children)
            if not ranked:
                if watch is None or child_watch is not None:
                    return None
                child_watch = watch  # look again, watching for a first candidate
                continue
            first = ranked[0][1]
            try:
                data, stat = self._call(zk.get_async, f"{parent}/{first}", watch)
            except NoNodeError:
                continue
            return LeaderInfo(election, *self._unpack(data, stat), int(stat.czxid))

    def leader(self, election: str) -> LeaderInfo | None:
        return self._read_leader(election, None)

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        with self._watches.armed(election) as signal:  # before the read
            info = self._read_leader(election, self._watches.watch(election))
        return info, Wait(signal)

    def contenders(self, election: str) -> list[Contender]:
        zk = self._conn.client()
        parent = self._election_node(election)
        try:
            self._call(zk.sync_async, parent)
            children = self._call(zk.get_children_async, parent)
        except NoNodeError:
            return []
        found = []
        for _, child in self._ranked(children):
            try:  # a node may go between the listing and its read: it is not live then
                data, stat = self._call(zk.get_async, f"{parent}/{child}")
            except NoNodeError:
                continue
            found.append(Contender(*self._unpack(data, stat), int(stat.czxid)))
        return found

    def close(self) -> None:
        self.close_session()
        self._conn.close()


__all__ = ["ZooKeeperStore", "ZooKeeperTicket"]
