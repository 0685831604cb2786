"""The Kubernetes backend: ``kubernetes://[namespace][?kubeconfig=..&context=..&layout=..]``.

Mapping of the contract (``coordination.k8s.io/v1`` Leases in one namespace; requests,
credentials and watches in :mod:`tenure.adapters.kubernetes_client`):

* session: ONE Lease per client, ``tenure-session-<id>`` (label
  ``tenure.dev/kind=session``), ``holderIdentity`` the session id,
  ``leaseDurationSeconds`` the TTL. :meth:`KubernetesStore.renew_session` is ONE
  update of it (``renewTime``), whatever the number of elections held: renewal traffic
  is flat in the number of elections. Every update carries the Lease's
  ``resourceVersion`` as precondition, so a session someone deleted is never revived
  (the update finds it gone: SessionExpired).
* candidates: the session Lease's ``tenure.dev/candidacies`` annotation lists the
  elections the client campaigns in (candidate id, value); :meth:`contenders` lists
  them. Waiters are NOT queued: whoever updates a free election Lease first wins
  (``StoreLimits.arrival_order`` is False).
* election: ONE Lease per election. Its name is the election name when that is a
  DNS-1123 subdomain (lowercase, <= 253, not starting ``tenure-``), else the name
  lowercased with other characters as ``-``, cut to fit, plus ``-`` and 10 hex digits
  of its SHA-256 (:func:`lease_name`); the full name is the ``tenure.dev/election``
  annotation (a Lease of another election under that name is a ConfigError).
  ``holderIdentity`` is the leader's candidate id; annotations name its session
  Lease, ticket, value and token.
* try_lead: a watch on the election Lease (and on the holder's session Lease) is armed
  before the read. The Lease is free when it has no holder, when its holder's session
  Lease is gone, or -- client-go's rule, never the holder's timestamps -- when THIS
  waiter has seen the holder's liveness object (its session Lease; for a client-go or
  ``layout=native`` holder the election Lease itself) keep one resourceVersion for its
  ``leaseDurationSeconds`` on its own monotonic clock. A session seen dead is deleted
  with a resourceVersion precondition (so a renewal that committed meanwhile wins and
  the waiter waits again), which also makes its owner's next renewal fail. Taking the
  Lease is ONE optimistic-concurrency update (the resourceVersion read): of several
  contenders one wins, the others get 409 and step again.
* fencing token: ``leaseTransitions`` set to max(``leaseTransitions``,
  ``tenure.dev/token``) + 1 by the winning update, also when the same holder
  re-acquires, and stored in the ``tenure.dev/token`` annotation. It lives in etcd with
  the Lease: it survives apiserver and etcd restarts. client-go raises
  ``leaseTransitions`` on each change of holder, so tokens keep rising in mixed
  elections. The resourceVersion is never used as a token.
* proclaim / guarded write: an update of the election Lease with the resourceVersion
  of a read that showed this ticket as holder. That is an honest precondition: nobody
  else can lead before the Lease itself is updated. Guarded writes are annotations
  ``tenure.dev/data.<hash>`` of that Lease (atomic with leadership); a small pointer
  Lease ``tenure-data-<hash>`` names the election Lease that holds key's latest value,
  for :meth:`read`.
* observe_step / leader: a read of the election Lease with a watch armed before it; a
  client-go holder is reported with token ``leaseTransitions``.
* loss: besides the core's deadline and SessionExpired, the watch on each held Lease
  reports a change of holder through ``report_loss``.

``layout=native``: election Leases are written as client-go's LeaseLock writes them and
every held election Lease is renewed itself (``renewTime``) on each renewal, so
client-go LeaderElectors on the same Lease see a live leader; renewal traffic then is
1 + elections held per TTL/3 (the price of interoperating).

Clock reasoning: a waiter takes over only after seeing no change for the lease
duration on its own monotonic clock, counted from when IT first read the current
resourceVersion -- after the holder's last renewal committed, hence after it was SENT.
The holder is valid until ``t_sent + TTL x (1 - drift)`` on its clock, so the two
intervals cannot overlap while the clocks' rates differ by less than ``drift``; wall
clocks (``renewTime``) are never compared. A crashed leader blocks for at most the
TTL after a waiter's first read plus a watch round trip; a waiter that arrives later
waits its own full TTL (client-go does the same).

Limits: TTLs are whole seconds (``leaseDurationSeconds``) from 1 to 86400. No arrival
order. Tokens restart if an election Lease is deleted (do not delete them). Sessions of
crashed clients stay as Lease objects until deleted by hand or by a waiter that needed
them gone; contenders skips sessions whose ``renewTime`` is older than twice their
duration (a wall-clock judgement, for listing only). Guarded-write data lives in the
election Lease's annotations (256 KiB per object in total). A crashed leader stays
named in its Lease (``leader()``, observers) until a candidate takes it over.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tenure.adapters.kubernetes_client import (
    Conflict,
    KubeConfig,
    Lease,
    LeaseApi,
    Watches,
    parse_url,
)
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

log = logging.getLogger("tenure.kubernetes")

A = "tenure.dev/"
ELECTION, SESSION, TICKET, VALUE, TOKEN = (A + "election", A + "session", A + "ticket",
                                           A + "value", A + "token")
HOLDER, ACQUIRED, CANDIDACIES, KIND = (A + "holder", A + "acquired", A + "candidacies",
                                       A + "kind")
DATA_KEY, DATA_LEASE = A + "key", A + "election-lease"
MAX_NAME = 253
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def lease_name(election: str) -> str:
    """The election's Lease name (see the module docstring); deterministic."""
    if (len(election) <= MAX_NAME and _SUBDOMAIN.fullmatch(election)
            and not election.startswith("tenure-")):
        return election
    digest = hashlib.sha256(election.encode()).hexdigest()[:10]
    base = re.sub(r"[^a-z0-9]+", "-", election.lower())
    base = base[:MAX_NAME - len(digest) - 1].strip("-") or "e"
    return f"{base}-{digest}"


def _data_name(key: str) -> str:
    return "tenure-data-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _data_annotation(key: str) -> str:
    return A + "data." + hashlib.sha256(key.encode()).hexdigest()[:40]


def _now() -> str:
    """A MicroTime (RFC 3339 with microseconds), for people and client-go."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(text: str | None) -> bytes:
    try:
        return base64.b64decode(text or "")
    except (ValueError, TypeError):
        return b""


def _annotations(lease: Lease) -> dict[str, str]:
    meta = lease.setdefault("metadata", {})
    found: dict[str, str] = meta.setdefault("annotations", None) or {}
    meta["annotations"] = found
    return found


def _rv(lease: Lease) -> str:
    return str(lease["metadata"]["resourceVersion"])


@dataclass(frozen=True)
class Holder:
    """Who an election Lease names as leader, as tenure reads it."""

    identity: str
    session: str | None
    """The holder's session Lease (a tenure holder), or None: the election Lease is its
    own liveness object (client-go or layout=native)."""
    ticket: str
    token: int
    value: bytes


def holder_of(lease: Lease) -> Holder | None:
    """The Lease's holder, or None if free. Tenure annotations count only while they
    describe the current holder (client-go keeps annotations it does not know)."""
    spec = lease.get("spec") or {}
    identity = spec.get("holderIdentity") or ""
    if not identity:
        return None
    notes = _annotations(lease)
    transitions = int(spec.get("leaseTransitions") or 0)
    ours = (notes.get(HOLDER) == identity and notes.get(ACQUIRED) == spec.get("acquireTime")
            and notes.get(TOKEN, "").isdigit())
    if not ours:
        return Holder(identity, None, "", transitions, b"")
    return Holder(identity, notes.get(SESSION) or None, notes.get(TICKET, ""),
                  int(notes[TOKEN]), _unb64(notes.get(VALUE)))


def _duration(lease: Lease) -> float:
    return float((lease.get("spec") or {}).get("leaseDurationSeconds") or 15)


@dataclass(eq=False)
class KubernetesTicket(Ticket):
    """A candidacy; ``key`` is a ticket id, ``lease`` the election Lease's name,
    ``value`` the candidate's value; ``order`` the token once it won."""

    lease: str = ""
    value: bytes = b""
    guard_key: int = 0
    current: Lease | None = None
    """The election Lease as this ticket last wrote or read it while holding it."""


@dataclass
class _Seen:
    """When THIS client first read a liveness object at one resourceVersion."""

    resource_version: str
    since: float


class KubernetesStore(Store[KubernetesTicket]):
    """The contract over Leases of one namespace (see the module docstring)."""

    limits = StoreLimits(min_ttl=1, max_ttl=86400, ttl_step=1, arrival_order=False)

    def __init__(self, config: KubeConfig) -> None:
        super().__init__()
        self.config = config
        self.api = LeaseApi(config)
        self.watches = Watches(self.api)
        self._lock = threading.RLock()  # small state; never held across a request
        self._session_lock = threading.Lock()  # serializes the session Lease's writes
        self._renewers = ThreadPoolExecutor(8, thread_name_prefix="tenure-k8s-renew")
        """layout=native: renews the held election Leases concurrently."""
        self._session_name: str | None = None
        self._session_id = ""
        self._session: Lease | None = None
        self._ttl = 0
        self._candidacies: dict[str, tuple[str, str, str]] = {}
        """election -> (candidate id, value in base64, enqueue time as MicroTime)."""
        self._seen: dict[str, _Seen] = {}
        self._held: dict[str, KubernetesTicket] = {}
        self.renewal_requests = 0
        """Requests sent by renewals (1 per renewal; + held elections with layout=native)."""

    @classmethod
    def from_url(cls, url: BackendURL) -> KubernetesStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    # -- session --------------------------------------------------------------------

    def _session_body(self) -> Lease:
        assert self._session_name is not None
        now = _now()
        return {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self._session_name, "labels": {KIND: "session"},
                         "annotations": {CANDIDACIES: "{}"}},
            "spec": {"holderIdentity": self._session_id, "leaseDurationSeconds": self._ttl,
                     "acquireTime": now, "renewTime": now},
        }

    def open_session(self, ttl: float) -> float:
        self._ttl = max(1, round(ttl))
        self._session_id = uuid.uuid4().hex
        self._session_name = f"tenure-session-{self._session_id[:20]}"
        with self._session_lock:
            with self._lock:
                self._candidacies = {}
            self._session = self.api.create(self._session_body(), "create the session Lease")
        return float(self._ttl)

    def _write_session(self, action: str, timeout: float | None = None) -> None:
        """Updates the session Lease (renewTime, candidacies) with its resourceVersion;
        after a 409 re-reads it once: still ours, the earlier update committed unheard."""
        with self._session_lock:
            current = self._session
            if current is None:
                raise SessionExpired(f"{self.description}: no session")
            for attempt in range(2):
                body = copy.deepcopy(current)
                body["spec"]["renewTime"] = _now()
                with self._lock:
                    candidacies = json.dumps(self._candidacies, sort_keys=True)
                _annotations(body)[CANDIDACIES] = candidacies
                try:
                    done = self.api.replace(body, action, timeout)
                except Conflict:
                    found = self.api.get(body["metadata"]["name"], action) if attempt == 0 \
                        else None
                    if found is None or (found.get("spec") or {}).get(
                            "holderIdentity") != self._session_id:
                        break
                    current = found
                    continue
                if done is None:
                    break
                self._session = done
                return
            self._session = None
        raise SessionExpired(f"{self.description}: session Lease {self._session_name} was "
                             "deleted (a waiter saw it unrenewed for its duration)")

    def renew_session(self, held: frozenset[KubernetesTicket]) -> None:
        with self._lock:
            self.renewal_requests += 1
        self._write_session("renew the session", min(self.config.timeout, self._ttl / 4))
        if self.config.native:
            with self._lock:
                self.renewal_requests += len(held)
            # Concurrently (8 at a time): one after another, 20 held Leases would take
            # 20 round trips of a TTL/3 renewal period.
            outcomes = list(self._renewers.map(self._renew_native_outcome, held))
            for ticket, outcome in zip(held, outcomes, strict=True):
                if isinstance(outcome, NotLeader):
                    self.report_loss(ticket, str(outcome))
            failed = [o for o in outcomes if isinstance(o, StoreUnavailable)]
            if failed:  # the core must not extend validity: a client-go waiter may act
                raise StoreUnavailable(str(failed[0]))

    def _renew_native_outcome(self, ticket: KubernetesTicket) -> Exception | None:
        try:
            self._renew_native(ticket)
        except (NotLeader, StoreUnavailable) as exc:
            return exc
        return None

    def _renew_native(self, ticket: KubernetesTicket) -> None:
        def renew(lease: Lease) -> None:
            lease["spec"]["renewTime"] = _now()
        self._update_held(ticket, "renew the election Lease", renew,
                          min(self.config.timeout, self._ttl / 4), cached=True)

    def close_session(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(StoreUnavailable, Conflict):
                self.api.delete(session["metadata"]["name"], None, "delete the session Lease")

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> KubernetesTicket:
        with self._lock:
            self._candidacies[election] = (candidate_id, _b64(value), _now())
        self._write_session("enqueue (record the candidacy in the session Lease)")
        return KubernetesTicket(election, candidate_id, uuid.uuid4().hex,
                                lease=lease_name(election), value=value)

    def _read_election(self, election: str) -> Lease | None:
        name = lease_name(election)
        lease = self.api.get(name, f"read Lease {name}")
        if lease is not None and _annotations(lease).get(ELECTION, election) != election:
            raise ConfigError(
                f"{self.description}: Lease {name} belongs to election "
                f"{_annotations(lease)[ELECTION]!r}, not {election!r} (their names map to "
                "one Lease name); rename one election")
        return lease

    def _expired(self, name: str, lease: Lease) -> float | None:
        """None if ``lease`` (a liveness object) has kept its resourceVersion for its
        duration on our clock; else the monotonic time when it will have."""
        now = time.monotonic()
        rv = _rv(lease)
        with self._lock:
            seen = self._seen.get(name)
            if seen is None or seen.resource_version != rv:
                seen = self._seen[name] = _Seen(rv, now)
        due = seen.since + _duration(lease)
        return None if now >= due else due

    def try_lead(self, ticket: KubernetesTicket) -> Step:
        if self._session is None:
            raise SessionExpired(f"{self.description}: the session of {ticket.candidate_id} "
                                 "ended")
        name = ticket.lease
        signal = self.watches.arm(name)
        try:
            return self._step(ticket, signal)
        except BaseException:
            signal.close()
            raise

    def _step(self, ticket: KubernetesTicket, signal: EventSignal) -> Step:
        lease = self._read_election(ticket.election)
        if lease is None:
            return self._create(ticket, signal)
        holder = holder_of(lease)
        if holder is not None and holder.ticket == ticket.key:
            signal.close()
            return self._won(ticket, holder.token, lease)
        if holder is not None and holder.session != self._session_name:
            live: Lease | None = lease
            watched = ticket.lease
            if holder.session is not None:
                signal.close()
                signal = self.watches.arm(ticket.lease, holder.session)
                watched = holder.session
                live = self.api.get(holder.session, "read the holder's session Lease")
            if live is not None:
                due = self._expired(watched, live)
                if due is not None:
                    return Wait(signal, due)
                if holder.session is not None:
                    try:
                        self.api.delete(holder.session, _rv(live),
                                        "delete a session seen unrenewed")
                    except Conflict:  # renewed meanwhile: it lives
                        signal.fire()
                        return Wait(signal)
                    log.info("%s: took session %s as dead after %.0f s unchanged",
                             self.description, holder.session, _duration(live))
        return self._take(ticket, lease, signal)

    def _fill(self, ticket: KubernetesTicket, lease: Lease, token: int) -> None:
        now = _now()
        spec = lease.setdefault("spec", {})
        spec.update({"holderIdentity": ticket.candidate_id, "leaseDurationSeconds": self._ttl,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": token})
        notes = _annotations(lease)
        notes.update({ELECTION: ticket.election, HOLDER: ticket.candidate_id, ACQUIRED: now,
                      TICKET: ticket.key, TOKEN: str(token), VALUE: _b64(ticket.value),
                      SESSION: "" if self.config.native else (self._session_name or "")})

    def _create(self, ticket: KubernetesTicket, signal: EventSignal) -> Step:
        lease: Lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": ticket.lease}}
        self._fill(ticket, lease, 1)
        try:
            made = self.api.create(lease, f"create Lease {ticket.lease}")
        except Conflict:
            signal.fire()
            return Wait(signal)
        signal.close()
        return self._won(ticket, 1, made)

    def _take(self, ticket: KubernetesTicket, lease: Lease, signal: EventSignal) -> Step:
        spec = lease.get("spec") or {}
        previous = max(int(spec.get("leaseTransitions") or 0),
                       int(_annotations(lease).get(TOKEN, "0") or 0)
                       if _annotations(lease).get(TOKEN, "0").isdigit() else 0)
        body = copy.deepcopy(lease)
        self._fill(ticket, body, previous + 1)
        try:
            done = self.api.replace(body, f"take Lease {ticket.lease}")
        except Conflict:
            signal.fire()
            return Wait(signal)
        if done is None:
            signal.fire()
            return Wait(signal)
        signal.close()
        return self._won(ticket, previous + 1, done)

    def _won(self, ticket: KubernetesTicket, token: int, lease: Lease) -> Won:
        ticket.order = token
        ticket.current = lease
        with self._lock:
            if ticket.key not in self._held:
                self._held[ticket.key] = ticket
                ticket.guard_key = id(ticket)
                self.watches.get(ticket.lease).guard(ticket.guard_key,
                                                     lambda lease: self._check(ticket, lease))
        return Won(token)

    def _check(self, ticket: KubernetesTicket, lease: Lease | None) -> None:
        if ticket.withdrawn:
            return
        holder = None if lease is None else holder_of(lease)
        if holder is None or holder.ticket != ticket.key:
            self.report_loss(ticket, f"Lease {ticket.lease} now names "
                             f"{holder.identity if holder else 'no holder'}")

    def withdraw(self, ticket: KubernetesTicket) -> None:
        with self._lock:
            self._held.pop(ticket.key, None)
            stale = self._candidacies.get(ticket.election)
            if stale is not None and stale[0] == ticket.candidate_id:
                del self._candidacies[ticket.election]
        if ticket.guard_key:
            self.watches.get(ticket.lease).unguard(ticket.guard_key)

        def release(lease: Lease) -> None:
            # As client-go's ReleaseOnCancel: no holder, 1 s duration.
            lease["spec"].update({"holderIdentity": "", "leaseDurationSeconds": 1,
                                  "renewTime": _now()})
            _annotations(lease).pop(HOLDER, None)
        with contextlib.suppress(NotLeader):
            self._update_held(ticket, f"release Lease {ticket.lease}", release)
        if self._session is not None:
            with contextlib.suppress(SessionExpired):
                self._write_session("withdraw (remove the candidacy)")

    def _update_held(self, ticket: KubernetesTicket, action: str,
                     change: Any, timeout: float | None = None, cached: bool = False) -> Lease:
        """Applies ``change`` to the election Lease with the resourceVersion of a read
        that showed ``ticket`` as holder (with ``cached``, first the Lease as this ticket
        last wrote it, saving the read); NotLeader otherwise (nothing written)."""
        for _ in range(3):
            lease = ticket.current if cached else self._read_election(ticket.election)
            cached = False
            holder = None if lease is None else holder_of(lease)
            if lease is None or holder is None or holder.ticket != ticket.key:
                raise NotLeader(f"{action} refused: {ticket.candidate_id} does not hold "
                                f"Lease {ticket.lease} of election {ticket.election!r}")
            body = copy.deepcopy(lease)
            change(body)
            try:
                done = self.api.replace(body, action, timeout)
            except Conflict:
                continue  # changed since the read: read again
            if done is not None:
                ticket.current = done
                return done
        raise NotLeader(f"{action} refused: Lease {ticket.lease} kept changing")

    def proclaim(self, ticket: KubernetesTicket, value: bytes) -> None:
        def change(lease: Lease) -> None:
            _annotations(lease)[VALUE] = _b64(value)
        self._update_held(ticket, "proclaim", change)
        ticket.value = value

    def guarded_write(self, ticket: KubernetesTicket, key: str, value: bytes) -> None:
        pointer = _data_name(key)
        current = self.api.get(pointer, "read the data pointer Lease")
        if current is None or _annotations(current).get(DATA_LEASE) != ticket.lease:
            body: Lease = current or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                      "metadata": {"name": pointer}, "spec": {}}
            body = copy.deepcopy(body)
            _annotations(body).update({DATA_KEY: key, DATA_LEASE: ticket.lease})
            try:
                if current is None:
                    self.api.create(body, "create the data pointer Lease")
                else:
                    self.api.replace(body, "update the data pointer Lease")
            except Conflict:
                pass  # another writer moved it at the same moment; ours lands below

        def change(lease: Lease) -> None:
            _annotations(lease)[_data_annotation(key)] = json.dumps(
                {"key": key, "value": _b64(value)})
        self._update_held(ticket, "guarded write", change)

    def read(self, key: str) -> bytes | None:
        pointer = self.api.get(_data_name(key), "read the data pointer Lease")
        if pointer is None:
            return None
        lease = self.api.get(_annotations(pointer).get(DATA_LEASE, ""), "read data")
        if lease is None:
            return None
        raw = _annotations(lease).get(_data_annotation(key))
        if raw is None:
            return None
        return _unb64(json.loads(raw).get("value"))

    # -- observing ------------------------------------------------------------------

    def _info(self, election: str, lease: Lease | None) -> LeaderInfo | None:
        holder = None if lease is None else holder_of(lease)
        if holder is None:
            return None
        return LeaderInfo(election, holder.identity, holder.value, holder.token)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._info(election, self._read_election(election))

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        signal = self.watches.arm(lease_name(election))
        try:
            current = self._info(election, self._read_election(election))
        except BaseException:
            signal.close()
            raise
        return current, Wait(signal)

    def contenders(self, election: str) -> list[Contender]:
        """The leader, then the waiters by their enqueue time (the writers' wall clocks:
        a listing order only; whoever updates the Lease first leads)."""
        leader = self.leader(election)
        now = datetime.datetime.now(datetime.UTC)
        waiting: list[tuple[str, Contender]] = []
        for session in self.api.list(f"{KIND}=session", "list the session Leases"):
            try:
                entries = json.loads(_annotations(session).get(CANDIDACIES) or "{}")
                spec = session.get("spec") or {}
                renewed = datetime.datetime.fromisoformat(
                    str(spec.get("renewTime")).replace("Z", "+00:00"))
            except (ValueError, TypeError):
                continue
            if (now - renewed).total_seconds() > 2 * _duration(session):
                continue
            entry = entries.get(election)
            if not entry or (leader is not None and entry[0] == leader.candidate_id):
                continue
            since = str(entry[2]) if len(entry) > 2 else ""
            waiting.append((since, Contender(entry[0], _unb64(entry[1]), 0)))
        first = [] if leader is None else [Contender(leader.candidate_id, leader.value, 0)]
        return first + [c for _, c in sorted(waiting, key=lambda pair: pair[0])]

    def close(self) -> None:
        self.watches.close()
        self._renewers.shutdown(wait=False)

