"""The Consul backend: ``consul://host:port[,host:port...][?options]``, Consul 1.14+.

Mapping of the contract:

* session: ONE Consul session per Store, ``Behavior=delete``, ``LockDelay`` = the
  ``lock_delay`` option (default 0), NO health checks (``NodeChecks: []``): only its
  TTL or its owner can end it, so a stopped agent or an unhealthy node cannot free a
  leader's key before the leader's own deadline. ``delete`` (not ``release``) so that a
  dead client's keys vanish: its leader key is freed and its queue entry leaves the
  queue. The server is sent HALF of tenure's TTL (see "Clock reasoning"). Renewal is
  ``PUT /v1/session/renew/<id>`` (404 -> SessionExpired); Consul never revives a session;
* queue: one key per candidate, ``<prefix>/<election>/~queue/<uuid>``, acquired with
  the session (so it dies with it), ordered by ``CreateIndex`` (Raft order). The
  enqueue transaction also reads the queue (``get-tree``), which places the entry:
  first, or waiting on the entry just ahead (its first step reads nothing). The
  enqueue does NOT also lock the leader key (which would make an uncontended
  campaign one write, as the guide's acquire): Consul's transactions cannot test
  that no other entry is queued, so a lock taken with the enqueue while a woken
  successor is about to lock would have to be given back -- a leader key held for a
  moment by a candidate that never leads, which observers (and a handoff watching
  for the successor) would see as a leader;
* try_lead: a ``?consistent`` read of the queue decides (skipped for an entry found
  first before, also by the enqueue transaction's ``get-tree``: entries only ever leave
  ahead of it, new ones queue behind it; and skipped after a wait: the lock transaction
  then also checks ``check-not-exists`` on each entry the last read saw ahead, and the
  queue is read again only if one is still there). The first entry acquires
  ``<prefix>/<election>/~leader`` with the session in a transaction that also checks
  its own queue key: Won(the acquisition's ``ModifyIndex``, a Raft index, which rises
  across deletion and recreation of the key; ``LockIndex`` does not). Any other entry
  gets Wait(a blocking query on its predecessor's key only -- no herd); an entry blocked
  by a leader key of a session not in the queue waits on the leader key. The signal is
  armed by the index the decisive read returned, so no change after it is missed: a
  blocking query of its own from that index for a client's first FAST_WAITS waits
  (read by the waiting thread itself, :class:`KeyWatch`: a change wakes the campaign
  with no hand-off between threads), a wait in the client's one :class:`Watcher`
  beyond (connections stay bounded);
* read with the win (``Ticket.read_on_win``, docs/design.md): the lock transaction
  also reads that data key (``get-or-empty``, both layouts; at the lock's Raft index).
* observe_step: a ``?consistent`` read of the leader key and such a signal on it;
* writes: proclaim, guarded writes (under ``<prefix>/data/``) and withdrawals are
  transactions (``/v1/txn``) with ``check-session`` on both the leader key and the
  ticket's own queue key, so a stale ticket of this client can never touch a newer
  leadership; a refused one raises NotLeader. ``proclaim`` keeps the token in the value;
* losses: ONE guard per client, its :class:`Watcher`: one thread and one blocking
  query over the folder of every held leader key; after each change one consistent
  check reports through ``report_loss`` exactly the keys no longer held by their
  ticket's session (deleted by an operator, session invalidated);
* leftovers: an entry whose withdraw failed, or whose enqueue got no answer (it may
  have committed), is withdrawn again after the next successful renewal: while the
  session lives, nothing else would remove it from the queue or free its leader key.

Clock reasoning: Consul documents only that a session is NOT invalidated before its
TTL; its servers in fact wait 2 x TTL (``SessionTTLMultiplier``, a grace period). So
tenure sends the server TTL/2 and ``open_session`` returns TTL/2, all Consul
guarantees, as the lifetime (the core renews every lifetime/3, a session that holds no
leadership every 0.45 x lifetime: ``unheld_renewal_share``). A renewal sent at
``t`` reaches the Consul leader after ``t`` and resets the session's timer there, so
the session lives until at least ``t + TTL/2`` by the leader's clock; the core's
deadline ``t + TTL/2 x (1 - drift)`` by ours comes first while the leader's clock runs
no more than ``drift`` faster than ours, and the undocumented grace adds another TTL/2
on top. A crashed leader blocks its election for at most 2 x TTL/2 = TTL after its last
renewal (+ lock_delay, + a timer firing and a Raft apply, milliseconds), as on every
backend. Consul restarts every session timer when its own leader changes (consul#524):
that delays expiry, never hastens it. Without health checks a session ends only by its
TTL or its owner, so lock_delay = 0 is safe.

Layouts (``layout=``): ``tenure``, the default, is the mapping above; ``native`` is the
key of ``consul lock PREFIX`` (Consul's ``api.Lock``): the election name IS ``PREFIX``
(no ``prefix`` in front; it keeps holding guarded-write data), the leader key is
``PREFIX/.lock`` (``native_key=``, default ``.lock``), acquired with tenure's session
and the lock's flag value ``0x2ddccbc058a50c18``; its value is the campaign's value
alone; ``native_key=`` empty makes the election name itself the key (the leader-election
guide's single key, flags 0). Like ``api.Lock``, candidates keep no queue: each tries
the acquisition, and waits on a blocking query of the key while a session holds it (no
arrival order). Release is ``unlock`` (the key stays, as ``Unlock`` leaves it). The
holder's session id is the candidate id readers report, the key's ``ModifyIndex`` the
token (the acquisition's, until a tenure holder's proclaim raises it). A key with other
flags (``consul lock -n N``'s semaphore) is a ConfigError. What the native side does
differently (session checks, its 15 s lock-delay, its monitor): docs/interop.md.

Limits: a server accepts session TTLs in [``session_ttl_min`` (default 10 s), 24 h], so
tenure's TTL must be at least 2 x ``session_ttl_min``: 20 s on a default server (a
refusal is a ConfigError saying so). A client uses at most 2 threads (the Watcher, a
cleanup) and FAST_WAITS + 10 connections, whatever it holds or waits on; while nothing
changes it sends its renewals and one blocking query per wait per 10 s. A change
under the guarded folder costs one check: O(keys guarded) up to 64 of them, else
O(keys in the folder), paced to a tenth of the watcher's time (:class:`Watcher`).
HTTP goes through :mod:`tenure.adapters.consul_http` (raw HTTP/1.1 on kept-alive
sockets), not py-consul's API, which refuses TTLs under 10 s, sends no token with
transactions, cannot abort a blocking query and costs ten times the CPU per request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tenure.adapters.consul_http import TOKEN_ENV, ConsulHTTP, Watched, Watcher
from tenure.config import BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable, TenureError
from tenure.options import Options
from tenure.store import Contender, LeaderInfo, NoSignal, Store, StoreLimits, Ticket, Wait, Won

log = logging.getLogger("tenure")

OPTIONS = {
    "lock_delay": "Consul lock-delay of the session, 0-60 s (default 0)",
    "dc": "datacenter (default: the agent's)", "token_file": "file holding the ACL token",
    "prefix": "KV prefix (default tenure)", "scheme": "http or https",
    "ca": "CA bundle (PEM) to verify the servers with",
    "timeout": "seconds to wait for an answer (default 5)",
    "layout": "keys: tenure (default) or native (the key of consul lock PREFIX, PREFIX/.lock "
              "with the lock flag; the election name is PREFIX)",
    "native_key": "layout=native only: the key under the election name (default .lock, "
                  "consul lock's; empty: the election name itself, the leader-election guide's)",
}
LOCK_FLAG_VALUE = 0x2DDCCBC058A50C18
"""``api.LockFlagValue``: marks a key as a lock (not a semaphore) for ``consul lock``."""
SEMAPHORE_FLAG_VALUE = 0xE0F69A2BAA414DE0
"""``api.SemaphoreFlagValue``: ``consul lock -n N`` (N > 1) holds ``PREFIX/.lock`` with it."""
RETRY_SOON = 0.1
"""Consul tells no end of a lock-delay: the first waiter steps again this often."""
TXN_CHECKS = 61
"""Entries ahead a lock transaction checks at most: Consul takes 64 operations in one
transaction (its own check, the lock and the marker read are three); more ahead, the
step reads the queue."""

_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_DC = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class _Settings:
    scheme: str
    ca: str | None
    dc: str | None
    prefix: str
    lock_delay: float
    timeout: float
    token: str | None = field(repr=False)
    native: bool = False
    native_key: str = ".lock"


def parse_options(url: BackendURL) -> _Settings:
    """Validates every option of a ``consul://`` URL (ConfigError naming a bad one)."""
    if url.username is not None or url.password is not None:
        raise ConfigError("consul URLs take no user or password; give the ACL token in a file "
                          f"(token_file=PATH) or in ${TOKEN_ENV}")
    if url.path not in ("", "/"):
        raise ConfigError(f"consul URL path {url.path!r} is not used; choose the key prefix "
                          "with ?prefix=NAME instead")
    opts = Options("consul", url, OPTIONS)
    if os.environ.get("TENURE_CONSUL_TOKEN"):
        raise ConfigError(f"$TENURE_CONSUL_TOKEN is no longer read; give the consul ACL token "
                          f"in ${TOKEN_ENV} or in token_file=PATH (one of them)")
    scheme = opts.choice("scheme", "http", ("http", "https"))
    ca = opts.optional("ca")
    if ca is not None and scheme != "https":
        raise ConfigError("consul option ca= needs scheme=https")
    opts.pem("ca")  # readable and PEM; requests and ssl take the path
    dc = opts.optional("dc")
    if dc is not None and not _DC.fullmatch(dc):
        raise ConfigError(f"consul option dc={dc!r} must be a datacenter name [A-Za-z0-9_-]")
    prefix = opts.text("prefix", "tenure")
    if not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ConfigError(
            f"consul option prefix={prefix!r} must be a key path of [A-Za-z0-9._-] segments "
            "joined by '/', without leading or trailing '/', e.g. prefix=apps/tenure")
    token = opts.secret("token", env=TOKEN_ENV, in_url=False)
    if token is not None and not token.strip():
        raise ConfigError(f"consul token_file={opts.optional('token_file')!r} is empty; put "
                          "the ACL token in it")
    native = opts.choice("layout", "tenure", ("tenure", "native")) == "native"
    native_key = opts.text("native_key", ".lock")
    if opts.given("native_key") and not native:
        raise ConfigError("consul option native_key= applies to layout=native only; add "
                          "layout=native or remove native_key")
    if native_key and (not _PREFIX.fullmatch(native_key) or ".." in native_key.split("/")):
        raise ConfigError(f"consul option native_key={native_key!r} must be a key path of "
                          "[A-Za-z0-9._-] segments joined by '/' (default .lock), or empty")
    return _Settings(scheme, ca and os.path.expanduser(ca), dc, prefix,
                     opts.duration("lock_delay", 0.0, low=0.0, high=60.0, allow_zero=True),
                     opts.duration("timeout", 5.0, low=0.1, high=300.0, allow_zero=True),
                     token and token.strip(), native=native, native_key=native_key)


def _segment(part: str) -> str:
    # Consul's HTTP router cleans "/./" out of paths; names may have "." segments.
    return "~dot" if part == "." else part


def _record(candidate_id: str, value: bytes, token: int | None = None) -> str:
    record: dict[str, object] = {"id": candidate_id, "value": base64.b64encode(value).decode()}
    if token is not None:
        record["token"] = token
    return base64.b64encode(json.dumps(record).encode()).decode()


def _index_of(results: list[dict[str, Any]], key: str) -> int:
    """The ``ModifyIndex`` a committed transaction's result gives ``key``."""
    return next(int(r["ModifyIndex"]) for r in results if r.get("Key") == key)


def _parse(entry: dict[str, Any]) -> tuple[str, bytes, int]:
    """(candidate id, value, token) of a queue or leader entry."""
    record = json.loads(base64.b64decode(entry.get("Value") or "") or b"{}")
    return (str(record.get("id", "")), base64.b64decode(record.get("value", "")),
            int(record.get("token") or entry["ModifyIndex"]))


@dataclass(eq=False)
class ConsulTicket(Ticket):
    """A queue key acquired with ``session``; ``order`` is its CreateIndex, ``token``
    the leader key's ModifyIndex at acquisition (0 until won)."""

    session: str = ""
    value: bytes = b""
    record: str = field(default="", repr=False)
    """The leader key's value for ``value`` (:func:`_record`), built once by the enqueue."""
    token: int = 0
    first: bool = False
    """Found first in the queue (by the enqueue or a read): its steps read it no more."""
    ahead: list[str] | None = field(default=None, repr=False)
    """The live entries ahead of it at its last queue read (None: none read yet); its
    lock transaction checks they are gone instead of reading the queue again."""
    guard: Watched | None = field(default=None, repr=False)
    early: tuple[str, int] | None = field(default=None, repr=False)
    """The first step, already decided by the enqueue (:meth:`ConsulStore.enqueue`):
    (key, ModifyIndex) of the live entry its queue read found just ahead, to wait on
    from that index (so no change after the read is missed)."""


class ConsulStore(Store[ConsulTicket]):
    """The contract over a Consul cluster (any of its agents or servers).

    ``consul://127.0.0.1:8500?lock_delay=0`` -- see the module docstring."""

    limits = StoreLimits(min_ttl=1.0, max_ttl=86400.0)
    unheld_renewal_share = 0.45
    """A session holding no leadership is renewed every 0.45 x its lifetime, not a third
    (``Store.unheld_renewal_share``): each renewal is a request to Consul's leader, and
    waiters are most sessions. It still never lapses while its owner lives: Consul keeps
    it the lifetime after each renewal (twice that in fact), so a failed renewal has
    more than half a lifetime of retries."""

    def __init__(self, hosts: tuple[tuple[str, int], ...], options: _Settings,
                 description: str) -> None:
        super().__init__()
        self.hosts = hosts
        self.options = options
        self._description = description
        self.http = ConsulHTTP(hosts, scheme=options.scheme, ca=options.ca, dc=options.dc,
                               timeout=options.timeout, token=options.token,
                               description=description)
        self._session = ""
        self._lifetime = 0.0
        self.watcher = Watcher(self.http)
        """Every wait and the one guard of every held leader key of this client."""
        self._pending: dict[str, ConsulTicket] = {}
        """Entries that may be left in the store (a withdraw failed, an enqueue got no
        answer): withdrawn at the next successful renewal, so they never block a queue."""
        self._lock = threading.Lock()
        self._cleaning = threading.Lock()
        self._native = NativeLock(self)

    @classmethod
    def from_url(cls, url: BackendURL) -> ConsulStore:
        store = cls(url.hosts, parse_options(url), url.redacted)
        try:
            store.http.call("GET", "/v1/status/leader")
        except StoreUnavailable:
            store.close()
            raise
        return store

    @property
    def description(self) -> str:
        return self._description

    def _election_key(self, election: str) -> str:
        return "/".join([self.options.prefix, *map(_segment, election.split("/"))])

    def _leader_key(self, election: str) -> str:
        return self._election_key(election) + "/~leader"

    def _queue_prefix(self, election: str) -> str:
        return self._election_key(election) + "/~queue/"

    def _data_key(self, key: str) -> str:
        return "/".join([self.options.prefix, "data", *map(_segment, key.split("/"))])

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        sent = math.floor(ttl * 500)  # milliseconds: half the TTL (module docstring)
        body = {"Name": "tenure", "TTL": f"{sent}ms", "Behavior": "delete",
                "LockDelay": f"{round(self.options.lock_delay * 1000)}ms",
                "NodeChecks": [], "ServiceChecks": []}
        response = self.http.call("PUT", "/v1/session/create", body=body)
        if "Invalid Session TTL" in response.text:
            raise ConfigError(
                f"Consul rejected the session TTL {sent}ms, which tenure sends for ttl={ttl:g} "
                "(half: Consul invalidates a session only after twice its TTL): "
                f"{response.text.strip()!r}; choose a ttl of at least twice that minimum, or "
                "lower session_ttl_min in every Consul server's configuration (default 10s)")
        if response.status_code != 200:
            raise StoreUnavailable(f"Consul could not create a session: "
                                   f"{response.status_code} {response.text.strip()[:200]}")
        self._lifetime = sent / 1000
        self._session = str(response.json()["ID"])
        return self._lifetime

    def renew_session(self, held: frozenset[ConsulTicket]) -> None:
        # A hung store must not hold the renewer past a third of the lifetime. A taken
        # leader key is reported by the leadership's guard, not here.
        status, body = self.http.renew(
            f"/v1/session/renew/{self._session}",
            timeout=min(self.options.timeout, max(0.1, self._lifetime / 3)))
        if status == 404 or (status == 200 and not json.loads(body or "null")):
            raise SessionExpired(f"Consul session {self._session} expired or was destroyed")
        if status != 200:
            raise StoreUnavailable(f"Consul session renewal failed: {status} "
                                   f"{body.strip()[:200]}")
        with self._lock:
            pending = list(self._pending.values())
        if pending and self._cleaning.acquire(blocking=False):  # not in the renewer's time
            threading.Thread(target=self._withdraw_pending, args=(pending,), daemon=True,
                             name="tenure-consul-cleanup").start()

    def _withdraw_pending(self, pending: list[ConsulTicket]) -> None:
        try:
            for ticket in pending:
                with contextlib.suppress(TenureError):  # still pending: the next renewal
                    self.withdraw(ticket)
        finally:
            self._cleaning.release()

    def close_session(self) -> None:
        self.watcher.drop_guards()
        if self._session:
            session, self._session = self._session, ""
            self.http.call("PUT", f"/v1/session/destroy/{session}")

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> ConsulTicket:
        if self.options.native:
            return self._native.enqueue(election, candidate_id, value)
        key = self._queue_prefix(election) + uuid.uuid4().hex
        ticket = ConsulTicket(election, candidate_id, key, session=self._session, value=value,
                              record=_record(candidate_id, value))
        entry = {"Verb": "lock", "Key": key, "Session": ticket.session, "Value": ticket.record}
        tree = {"Verb": "get-tree", "Key": self._queue_prefix(election)}
        try:
            results, errors = self.http.txn([entry, tree])
        except StoreUnavailable:
            with self._lock:  # it may have committed, ahead of the entry queued next
                self._pending[key] = ticket
            raise
        if errors:
            raise SessionExpired(f"Consul refused a queue entry ({errors[0]})")
        ticket.order = int(results[0]["CreateIndex"])
        self._queued(ticket, results[1:])
        return ticket

    def _queued(self, ticket: ConsulTicket, entries: list[dict[str, Any]]) -> None:
        """Places ``ticket`` by the queue its enqueue read (``entries``, at the
        enqueue's own index): first, or waiting on the live entry just ahead -- the
        first step then needs no read of its own (``ticket.early``)."""
        found = sorted((e for e in entries if e.get("Session") and e.get("Key") != ticket.key
                        and int(e["CreateIndex"]) < ticket.order),
                       key=lambda e: int(e["CreateIndex"]))
        ticket.first = not found
        if found and len(found) <= TXN_CHECKS:
            ticket.ahead = [e["Key"] for e in found]
            seen = int(found[-1]["ModifyIndex"])
            ticket.early = (found[-1]["Key"], seen)

    def _checks(self, ticket: ConsulTicket) -> list[dict[str, Any]]:
        return [{"Verb": "check-session", "Key": ticket.key, "Session": ticket.session},
                {"Verb": "check-session", "Key": self._leader_key(ticket.election),
                 "Session": ticket.session}]

    def withdraw(self, ticket: ConsulTicket) -> None:
        if ticket.guard is not None:
            self.watcher.drop(ticket.guard)
        try:
            self._withdraw(ticket)
        except BaseException:
            with self._lock:  # perhaps still there: withdrawn after the next renewal
                self._pending[ticket.key] = ticket
            raise
        with self._lock:  # gone
            self._pending.pop(ticket.key, None)

    def _withdraw(self, ticket: ConsulTicket) -> None:
        if self.options.native:
            self._native.withdraw(ticket)
            return
        leader = self._leader_key(ticket.election)
        _, errors = self.http.txn([*self._checks(ticket), {"Verb": "delete", "Key": leader},
                                   {"Verb": "delete", "Key": ticket.key}])
        if errors:  # it does not lead: just leave the queue
            self.http.txn([{"Verb": "delete", "Key": ticket.key}])

    def _queue(self, election: str) -> list[dict[str, Any]]:
        entries = self.http.get(self._queue_prefix(election), recurse="")[1]
        live = [e for e in entries or [] if e.get("Session")]
        return sorted(live, key=lambda e: int(e["CreateIndex"]))

    def try_lead(self, ticket: ConsulTicket) -> Won | Wait:
        if self.options.native:
            return self._native.try_lead(ticket)
        if ticket.early is not None:  # decided by the enqueue
            (key, seen), ticket.early = ticket.early, None
            return Wait(self.watcher.signal(key, seen, seen))
        if not ticket.first and (ticket.ahead is None or len(ticket.ahead) > TXN_CHECKS):
            place = self._place(ticket)
            if place is not None:
                return place
        step = self._take(ticket)
        if step is None:  # an entry seen ahead is still there: read the queue again
            ticket.ahead = None
            place = self._place(ticket)
            if place is not None:
                return place
            step = self._take(ticket)  # first now: checks only its own entry
            assert step is not None
        return step

    def _place(self, ticket: ConsulTicket) -> Wait | None:
        """Reads the queue: a Wait on the live entry just ahead of ``ticket`` (all of
        those ahead remembered in ``ticket.ahead``), or None when it is first."""
        queue = self._queue(ticket.election)
        mine = [i for i, e in enumerate(queue)
                if e["Key"] == ticket.key and e["Session"] == ticket.session]
        if not mine:
            raise SessionExpired(f"the entry of {ticket.candidate_id} in "
                                 f"{ticket.election!r} died with its session")
        if mine[0] > 0:
            ticket.ahead = [e["Key"] for e in queue[:mine[0]]]
            ahead = queue[mine[0] - 1]
            seen = int(ahead["ModifyIndex"])
            return Wait(self.watcher.signal(ahead["Key"], seen, seen))
        ticket.first = True  # for good: entries only leave ahead of it
        ticket.ahead = []
        return None

    def _take(self, ticket: ConsulTicket) -> Won | Wait | None:
        """The lock transaction; for an entry not known first it also checks that each
        entry seen ahead at the last queue read is gone (``check-not-exists``: entries
        only ever leave ahead of it, new ones queue behind it, so then it is first, as a
        fresh read would find). None if one of those is still there (perhaps without a
        session: only a queue read can tell), so the caller reads the queue."""
        ahead = [] if ticket.first else list(ticket.ahead or [])
        leader = self._leader_key(ticket.election)
        results, errors = self.http.txn([
            *({"Verb": "check-not-exists", "Key": key} for key in ahead),
            {"Verb": "check-session", "Key": ticket.key, "Session": ticket.session},
            {"Verb": "lock", "Key": leader, "Session": ticket.session,
             "Value": ticket.record or _record(ticket.candidate_id, ticket.value)},
            *self._marker_op(ticket)], sent=self.watcher.prewake)  # the guard comes next
        if not errors:
            ticket.first = True
            ticket.token = _index_of(results, leader)
            self._guard(ticket)
            return self._won(ticket, results)
        if any(errors[:len(ahead)]):
            return None
        own, lock = errors[len(ahead):len(ahead) + 2]
        if not own and not lock:
            raise self._marker_refused(errors[-1])
        if own:
            raise SessionExpired(f"the entry of {ticket.candidate_id} in "
                                 f"{ticket.election!r} is gone ({own})")
        ticket.first = True  # every entry seen ahead has gone
        if "Permission denied" in lock:
            raise ConfigError(f"Consul refused to lock {leader!r} ({lock}); give an ACL "
                              f"token with key write rights via token_file= or ${TOKEN_ENV}")
        if "lock delay" in lock:
            return Wait(NoSignal(), retry_at=time.monotonic() + RETRY_SOON)
        index, entries = self.http.get(leader)
        if not entries:  # freed since the transaction
            return Wait(NoSignal(), retry_at=time.monotonic() + RETRY_SOON)
        return Wait(self.watcher.signal(leader, index, index))  # held by a session not queued

    def _marker_op(self, ticket: ConsulTicket) -> list[dict[str, Any]]:
        """The read of ``ticket.read_on_win`` that rides in the lock transaction, if
        any. A transaction with a write is applied through Raft, so its reads are made
        at the lock's own log index: as linearizable as :meth:`read` (``?consistent``),
        and after the release that freed the key (an earlier index), hence after the
        marker the previous leader wrote before it. ``get-or-empty`` (Consul 1.14): a
        missing key does not fail the transaction."""
        if ticket.read_on_win is None:
            return []
        return [{"Verb": "get-or-empty", "Key": self._data_key(ticket.read_on_win)}]

    def _marker_refused(self, error: str) -> TenureError:
        """Only the marker read of a lock transaction failed (nothing was locked)."""
        if "Permission denied" in error:
            return ConfigError(f"Consul refused to read under {self._data_key('')!r} "
                               f"({error}); give an ACL token with key read and write "
                               f"rights there via token_file= or ${TOKEN_ENV}")
        return StoreUnavailable(f"Consul lock transaction failed on its marker read: {error}")

    def _won(self, ticket: ConsulTicket, results: list[dict[str, Any]]) -> Won:
        if ticket.read_on_win is None:
            return Won(ticket.token)
        key = self._data_key(ticket.read_on_win)
        found = [r for r in results if r.get("Key") == key and int(r.get("CreateIndex") or 0)]
        value = base64.b64decode(found[0].get("Value") or "") if found else None
        return Won(ticket.token, value, read_done=True)

    def proclaim(self, ticket: ConsulTicket, value: bytes) -> None:
        if self.options.native:
            self._native.proclaim(ticket, value)
            return
        _, errors = self.http.txn([*self._checks(ticket), {
            "Verb": "lock", "Key": self._leader_key(ticket.election), "Session": ticket.session,
            "Value": _record(ticket.candidate_id, value, ticket.token)}])
        if errors:
            raise NotLeader(f"proclaim refused by Consul: {ticket.candidate_id} does not "
                            f"lead election {ticket.election!r}")
        ticket.value, ticket.record = value, ""

    def guarded_write(self, ticket: ConsulTicket, key: str, value: bytes) -> None:
        checks = self._native.checks(ticket) if self.options.native else self._checks(ticket)
        _, errors = self.http.txn([*checks, {
            "Verb": "set", "Key": self._data_key(key), "Value": base64.b64encode(value).decode()}])
        if errors:
            raise NotLeader(f"guarded write refused by Consul: {ticket.candidate_id} does "
                            f"not lead election {ticket.election!r}")

    def read(self, key: str) -> bytes | None:
        entries = self.http.get(self._data_key(key))[1]
        return base64.b64decode(entries[0].get("Value") or "") if entries else None

    # -- observing ------------------------------------------------------------------

    @staticmethod
    def _info(election: str, entries: Any) -> LeaderInfo | None:
        if not entries or not entries[0].get("Session"):
            return None
        return LeaderInfo(election, *_parse(entries[0]))

    def leader(self, election: str) -> LeaderInfo | None:
        if self.options.native:
            return self._native.info(election, self.http.get(self._native.key(election))[1])
        return self._info(election, self.http.get(self._leader_key(election))[1])

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        key = self._native.key(election) if self.options.native else self._leader_key(election)
        index, entries = self.http.get(key)
        seen = int(entries[0]["ModifyIndex"]) if entries else 0
        info = (self._native.info(election, entries) if self.options.native
                else self._info(election, entries))
        return info, Wait(self.watcher.signal(key, seen, index))

    def contenders(self, election: str) -> list[Contender]:
        if self.options.native:  # neither consul lock nor the guide registers waiters
            holder = self.leader(election)
            return [] if holder is None else [
                Contender(holder.candidate_id, holder.value, holder.token)]
        found = [Contender(*_parse(e)[:2], int(e["CreateIndex"]))  # in CreateIndex order
                 for e in self._queue(election)]
        current = self.leader(election) if found else None
        if current is not None and found[0].candidate_id == current.candidate_id:
            found[0] = Contender(current.candidate_id, current.value, found[0].order)
        return found  # a proclaim changes the leader key's value only

    # -- guarding held leaderships ----------------------------------------------------

    def _guard(self, ticket: ConsulTicket) -> None:
        """Reports a loss once the leader key is no longer held by the ticket's session
        (deleted by an operator, session invalidated), confirmed by a consistent check
        of the client's one :class:`Watcher`."""
        def lost() -> None:
            if not ticket.withdrawn:
                self.report_loss(ticket, "the Consul leader key is no longer held by this "
                                 "client's session")

        key = (self._native.key(ticket.election) if self.options.native
               else self._leader_key(ticket.election))
        ticket.guard = self.watcher.guard(key, ticket.session, ticket.token, lost)

    def close(self) -> None:
        self.watcher.close()
        self.http.close()


class NativeLock:
    """The steps of ``layout=native`` (see the module docstring): ``api.Lock``'s key,
    acquired with the store's session; no queue."""

    def __init__(self, store: ConsulStore) -> None:
        self.store = store
        self.flags = LOCK_FLAG_VALUE if store.options.native_key == ".lock" else 0

    def key(self, election: str) -> str:
        parts = [*map(_segment, election.split("/"))]
        native_key = self.store.options.native_key
        return "/".join([*parts, native_key] if native_key else parts)

    def info(self, election: str, entries: Any) -> LeaderInfo | None:
        """The holder: its session is its id, the key's value its value."""
        if not entries or not entries[0].get("Session"):
            return None
        entry = entries[0]
        return LeaderInfo(election, str(entry["Session"]),
                          base64.b64decode(entry.get("Value") or ""), int(entry["ModifyIndex"]))

    def checks(self, ticket: ConsulTicket) -> list[dict[str, Any]]:
        return [{"Verb": "check-session", "Key": ticket.key, "Session": ticket.session}]

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> ConsulTicket:
        session = self.store._session
        if not session:
            raise SessionExpired("no Consul session")
        key = self.key(election)
        log.info("consul layout=native: candidate %s is session %s on key %s", candidate_id,
                 session, key)
        return ConsulTicket(election, session, key, session=session, value=value)

    def _lock_op(self, ticket: ConsulTicket, value: bytes) -> dict[str, Any]:
        return {"Verb": "lock", "Key": ticket.key, "Session": ticket.session,
                "Flags": self.flags, "Value": base64.b64encode(value).decode()}

    def try_lead(self, ticket: ConsulTicket) -> Won | Wait:
        http = self.store.http
        if ticket.session != self.store._session:
            raise SessionExpired(f"the session of {ticket.candidate_id} ended")
        index, entries = http.get(ticket.key)
        entry = entries[0] if entries else None
        if entry is not None and self.flags and int(entry.get("Flags") or 0) != self.flags:
            kind = ("a semaphore (consul lock -n N, N > 1)"
                    if int(entry.get("Flags") or 0) == SEMAPHORE_FLAG_VALUE else "not a lock")
            raise ConfigError(f"Consul key {ticket.key!r} is {kind}: its flags are "
                              f"{int(entry.get('Flags') or 0):#x}, not consul lock's "
                              f"{self.flags:#x}; a leader election needs consul lock with -n 1")
        if entry is not None and entry.get("Session") not in (None, "", ticket.session):
            return Wait(self.store.watcher.signal(ticket.key, int(entry["ModifyIndex"]), index))
        results, errors = http.txn([self._lock_op(ticket, ticket.value),
                                    *self.store._marker_op(ticket)])
        if not errors:
            ticket.token = _index_of(results, ticket.key)
            self.store._guard(ticket)
            return self.store._won(ticket, results)
        if not errors[0]:
            raise self.store._marker_refused(errors[-1])
        if "Permission denied" in errors[0]:
            raise ConfigError(f"Consul refused to lock {ticket.key!r} ({errors[0]}); give an "
                              f"ACL token with key write rights via token_file= or ${TOKEN_ENV}")
        if "invalid session" in errors[0].lower():
            raise SessionExpired(f"Consul session {ticket.session} expired ({errors[0]})")
        # Taken since the read, or a lock-delay after the holder's session ended (Consul
        # tells not when it ends: api.Lock retries after 5 s, we sooner).
        index, entries = http.get(ticket.key)
        if entries and entries[0].get("Session"):
            seen = int(entries[0]["ModifyIndex"])
            return Wait(self.store.watcher.signal(ticket.key, seen, index))
        return Wait(NoSignal(), retry_at=time.monotonic() + RETRY_SOON)

    def withdraw(self, ticket: ConsulTicket) -> None:
        """Releases the key if this ticket's session holds it (``Unlock``: it stays); also
        after an acquisition whose answer was lost (refused when another holds it)."""
        self.store.http.txn([*self.checks(ticket), {
            "Verb": "unlock", "Key": ticket.key, "Session": ticket.session,
            "Flags": self.flags}])

    def proclaim(self, ticket: ConsulTicket, value: bytes) -> None:
        _, errors = self.store.http.txn([*self.checks(ticket), self._lock_op(ticket, value)])
        if errors:
            raise NotLeader(f"proclaim refused by Consul: {ticket.candidate_id} does not "
                            f"hold {ticket.key!r}")
        ticket.value = value
