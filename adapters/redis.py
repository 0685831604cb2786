"""The Redis backend: ``redis://[user:password@]host:port[,host:port,...][/db][?options]``
(``rediss://`` for TLS), over N *independent* Redis instances with a quorum guard.

    client = tenure.connect("redis://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379", ttl=5)
    with client.election("jobs/nightly").campaign() as lead:
        do_work(fencing_token=lead.token)

Mapping of the contract (``M`` = majority = N // 2 + 1; every decision needs M answers):

* session: a key ``<prefix>session:<id>`` with PX = TTL on every instance. Renewal is ONE
  ``PEXPIRE`` per instance, sent to all in parallel, whatever the number of elections;
  ``PEXPIRE`` on a missing key does nothing, so an expired session is never revived. It
  succeeds if M instances renewed; if the key is gone on more than N - M, SessionExpired.
* try_lead: a hash ``<prefix>leader:<election>`` per instance holding session id,
  ticket, token, candidate id and value. One step reads the state of a majority; if a
  majority is held by live sessions of others it is Wait. Otherwise a Lua script takes
  the key on each instance if it is absent or its holder's session key is gone there (a
  dead session), so a renewal never touches per-election keys. The ticket leads (Won)
  if the script succeeded on M instances and the round came back within TTL x (1 - 0.5)
  of being sent (0.5 = the largest drift tenure accepts); otherwise it releases what it
  took (compare-and-delete) and returns Wait.
* fencing token: ``<prefix>counter:<election>`` per instance. A candidate reads the
  counters of a majority, proposes max + 1, and the SAME script round that takes the
  leader key accepts only where ``counter < proposal`` and then sets ``counter =
  proposal``. So on every instance the tokens accepted strictly increase in the order of
  acquisition. Two leaderships L1 before L2 each acquired a majority; these majorities
  share an instance i. L1 acquired i before L2 did: had L2 acquired i first, L1 could
  take i only after L2's session died there, i.e. after L2's whole validity (the session
  key outlives the leader's deadline) -- but L2 leads after L1. Hence token(L2) >
  counter_i >= token(L1), across any leader change, as long as no majority of instances
  loses its counters (see persistence below).
* loss: our leader key on an instance can only disappear with our session key there.
  Each ticket remembers the set A of instances it was acquired on; a renewal that
  renewed the set R proves the key is intact on R & A until send time + TTL, so the
  ticket stays valid only while |R & A| >= M (else ``report_loss``). An acquisition that
  raced with a renewal is checked against it the same way; a ticket won but not yet
  held by the core that loses its majority fails the renewal (StoreUnavailable), so
  that renewal extends no deadline.
* proclaim and guarded writes: scripts that check, per instance, that the leader key
  holds our ticket and token and that our session is alive; they succeed on M
  instances, else NotLeader (or StoreUnavailable when too few answered). Guarded data
  ``<prefix>data:<key>`` carries (token, seq); a read takes a majority and returns the
  value with the highest (token, seq). ``leader()`` reads a majority and reports a
  leader only if M instances agree on it with its session alive there.
* signal: every acquire/release/proclaim PUBLISHes on ``<prefix>changed:<election>``;
  one pattern subscription per instance per client rings a bell that wakes every
  waiter of that election (a reconnect rings all). The mark is taken before the read.
  A holder's session expiry is silent and a message can be lost, so ``retry_at`` is
  the holder's session PTTL or min(TTL / 4, 1 s), whichever is first. A split vote
  (nobody took a majority) retries after a random 5-50 ms instead, so the candidates
  that split do not collide again in lockstep.
* order: Redis has no queue (``arrival_order=False``): waiting candidates are served in
  no particular order (whoever's acquisition round lands first).
* contenders: ``enqueue`` registers the candidate in a hash ``<prefix>contenders:
  <election>`` on a majority, where its session is alive (field = ticket, bound to the
  session: it counts only while the session key exists on that instance); ``withdraw``
  deletes it. A listing reads a majority and keeps an entry seen live on at least
  (answers - (N - M)) instances -- every registered live candidate is, being on M of N.

Clock reasoning: a renewal sent at t (local monotonic clock) arrives at each instance
later, and PEXPIRE sets expiry >= arrival + TTL >= t + TTL, so ``open_session`` returns
TTL as the lifetime and the core's deadline t + TTL x (1 - drift) is covered on the
renewed majority. Redis measures expiry with the INSTANCE's wall clock, which is not
monotonic: ``drift`` covers a difference in clock rate, NOT a wall-clock step on a Redis
host (keep NTP slewing, not stepping). ``retry_at`` from a PTTL only schedules a re-read.

Persistence: the token guarantee needs every counter on a majority to survive: run
each instance with ``appendonly yes`` and ``appendfsync always`` (or accept losing at
most a minority of instances' data at once, and restart a wiped instance only after a
TTL has passed). An instance restarted WITHOUT its data lowers its counter; one such
instance of three is outvoted, but if a majority (or a single instance) loses its data
the next token can be LOWER than an earlier one. Use ``maxmemory-policy noeviction``.

Limits: N must be odd; N = 1 works but is not partition-safe (``StoreLimits``). Redis
Cluster and replica failover are not supported (a replica may lose acknowledged
counters); use independent primaries. TTL from 0.5 s to 1 day, in milliseconds. Waiters
are not served in arrival order, and every change wakes every waiter of the election.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tenure.adapters import redis_scripts as lua
from tenure.config import MAX_DRIFT, BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable
from tenure.options import Options
from tenure.store import (
    WAIT_SLICE,
    Contender,
    LeaderInfo,
    NoSignal,
    Signal,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

log = logging.getLogger("tenure.adapters.redis")

R = TypeVar("R")

OPTIONS = {
    "prefix": "key prefix (default tenure:)",
    "timeout": "seconds per request (default 1; capped at TTL / 4)",
    "password_file": "file holding the password",
    "ca": "CA bundle for rediss://",
    "cert": "client certificate for rediss://",
    "key": "client key for rediss://",
}
PASSWORD_ENV = "TENURE_REDIS_PASSWORD"
DEFAULT_PREFIX = "tenure:"
DEFAULT_TIMEOUT = 1.0
SINGLE_INSTANCE_WARNING = (
    "a single Redis instance is not partition-safe: a failover or a restart without "
    "its data can produce two leaders or lower a fencing token; use 3 or more "
    "independent instances (redis://h1:p,h2:p,h3:p)"
)


@dataclass(eq=False)
class RedisTicket(Ticket):
    """A registered candidate; ``key`` is its random ticket id. Once it leads:
    ``token``, the instances ``acquired`` it was won on, the version ``vseq`` of its
    proclaimed value, and ``majority_lost`` once a renewal covered fewer than a
    majority of ``acquired`` (the leadership is void)."""

    sid: str = ""
    value: bytes = b""
    token: int = 0
    vseq: int = 0
    acquired: frozenset[int] = frozenset()
    majority_lost: bool = False


class _Instance:
    """One Redis instance: a client without retries (a fault must show at once) and
    its scripts (EVALSHA, loaded again after a restart)."""

    def __init__(self, host: str, port: int, timeout: float, options: dict[str, Any]) -> None:
        self.address = f"{host}:{port}"
        self.client = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), **options,
        )
        self.state = self.client.register_script(lua.STATE)
        self.acquire = self.client.register_script(lua.ACQUIRE)
        self.release = self.client.register_script(lua.RELEASE)
        self.register = self.client.register_script(lua.REGISTER)
        self.proclaim = self.client.register_script(lua.PROCLAIM)
        self.guarded_write = self.client.register_script(lua.GUARDED_WRITE)
        self.contenders = self.client.register_script(lua.CONTENDERS)


class _Bell:
    """Per-election change counters, rung by the subscribers; ``ring(ALL)`` after a
    (re)subscription wakes the waiters of every election."""

    ALL = ""  # never an election name (names are validated non-empty)

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.counts: dict[str, int] = {}

    def ring(self, election: str) -> None:
        with self.cond:
            self.counts[election] = self.counts.get(election, 0) + 1
            self.cond.notify_all()


class _BellSignal(Signal):
    """Fires once the bell rang for ``election`` (or for all) after it was armed."""

    def __init__(self, bell: _Bell, election: str) -> None:
        self._bell, self._election = bell, election
        with bell.cond:
            self._mark = self._rung()

    def _rung(self) -> tuple[int, int]:
        counts = self._bell.counts
        return counts.get(self._election, 0), counts.get(_Bell.ALL, 0)

    def wait(self, timeout: float) -> bool:
        with self._bell.cond:
            return self._bell.cond.wait_for(lambda: self._rung() != self._mark,
                                            max(0.0, timeout))


class _CredentialsRefused(StoreUnavailable):
    """An instance refused the credentials (an input error, unlike an outage)."""


class RedisStore(Store[RedisTicket]):
    """The contract over N independent Redis instances (see the module docstring)."""

    def __init__(
        self, hosts: Sequence[tuple[str, int]], *, description: str,
        prefix: str = DEFAULT_PREFIX, timeout: float = DEFAULT_TIMEOUT,
        connection: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.hosts = tuple(hosts)
        self.n = len(self.hosts)
        self.majority = self.n // 2 + 1
        self.prefix = prefix
        self._description = description
        self._connection = connection or {}
        self._timeout = timeout
        self.limits = StoreLimits(
            min_ttl=0.5, max_ttl=86400.0, arrival_order=False,
            partition_safe=self.n >= 3,
            warning="" if self.n >= 3 else SINGLE_INSTANCE_WARNING,
        )
        self._lock = threading.Lock()
        self._instances = self._connect(timeout)
        self._pool = ThreadPoolExecutor(4 * self.n, thread_name_prefix="tenure-redis")
        self._renew_pool = ThreadPoolExecutor(self.n, thread_name_prefix="tenure-redis-renew")
        self._ttl = 0.0
        self._sid = ""
        self._renewed_at = 0.0
        self._holding: set[RedisTicket] = set()
        """Tickets whose leader keys we took (from the win on, before the core marks them
        won, until withdrawn or reported lost)."""
        self._renewals: deque[tuple[float, frozenset[int]]] = deque(maxlen=64)
        self._bell = _Bell()
        self._stop = threading.Event()
        self._listeners: list[threading.Thread] = []
        self._seq = itertools.count(1)

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> RedisStore:
        opts = Options("redis", url, OPTIONS)
        n = len(url.hosts)
        if n % 2 == 0:
            raise ConfigError(
                f"{url.redacted} names {n} Redis instances; use an odd number (3 or 5, or 1 "
                f"for development): a majority of {n} is {n // 2 + 1}, so {n} instances "
                f"survive no more failures than {n - 1} would"
            )
        if len(set(url.hosts)) != n:
            raise ConfigError(f"{url.redacted} names an instance twice; list each once")
        connection: dict[str, Any] = {"db": _database(url)}
        if url.username:  # redis://:password@host is Redis's default user
            connection["username"] = url.username
        password = opts.secret("password", env=PASSWORD_ENV)
        if password is not None:
            connection["password"] = password
        if url.scheme == "rediss":
            connection.update(_tls_options(opts))
        elif given := [name for name in ("ca", "cert", "key") if opts.given(name)]:
            raise ConfigError(
                f"option(s) {', '.join(given)} need TLS; use rediss:// instead of redis://"
            )
        timeout = opts.duration("timeout", DEFAULT_TIMEOUT, low=0.0, high=300.0)
        prefix = opts.text("prefix", DEFAULT_PREFIX)
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ConfigError(f"option prefix {prefix!r} must be non-empty, without spaces")
        return cls(url.hosts, description=url.redacted, prefix=prefix, timeout=timeout,
                   connection=connection)

    @property
    def description(self) -> str:
        return self._description

    def _connect(self, timeout: float) -> list[_Instance]:
        return [_Instance(host, port, timeout, self._connection) for host, port in self.hosts]

    def _key(self, kind: str, name: str) -> str:
        """``<prefix><kind>:<name>``: session, leader, counter, contenders, changed, data."""
        return f"{self.prefix}{kind}:{name}"

    @property
    def _ttl_ms(self) -> int:
        return math.ceil(self._ttl * 1000)

    # -- fan-out ----------------------------------------------------------------------

    def _fanout(self, call: Callable[[_Instance], R], *, renewal: bool = False
                ) -> list[R | StoreUnavailable]:
        """``call`` on every instance in parallel; a failure becomes StoreUnavailable."""
        instances = self._instances
        if self.n == 1:
            return [self._attempt(call, instances[0])]
        pool = self._renew_pool if renewal else self._pool
        futures = [pool.submit(self._attempt, call, inst) for inst in instances]
        done, _ = wait_futures(futures, timeout=2 * self._timeout + 0.5)
        return [
            f.result() if f in done else StoreUnavailable(f"{inst.address}: no answer")
            for f, inst in zip(futures, instances, strict=True)
        ]

    @staticmethod
    def _attempt(call: Callable[[_Instance], R], inst: _Instance) -> R | StoreUnavailable:
        try:
            return call(inst)
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            return _CredentialsRefused(f"{inst.address}: {type(exc).__name__}: {exc}")
        except (redis.RedisError, OSError) as exc:
            return StoreUnavailable(f"{inst.address}: {type(exc).__name__}: {exc}")

    def _answers(self, results: list[R | StoreUnavailable], action: str) -> list[tuple[int, R]]:
        """The successful answers, or StoreUnavailable if fewer than a majority."""
        answers = [(i, r) for i, r in enumerate(results) if not isinstance(r, StoreUnavailable)]
        if len(answers) < self.majority:
            errors = "; ".join(str(r) for r in results if isinstance(r, StoreUnavailable))
            refused = sum(1 for r in results if isinstance(r, _CredentialsRefused))
            if refused > self.n - self.majority:
                # Not transient: retrying cannot help, so campaigns must not wait it out.
                raise ConfigError(
                    f"{action}: Redis refused this client's credentials on {refused} of "
                    f"{self.n} instances of {self._description} ({errors}); fix the user "
                    "and password (URL, password_file option or TENURE_REDIS_PASSWORD)"
                )
            raise StoreUnavailable(
                f"{action}: only {len(answers)} of {self.n} Redis instances of "
                f"{self._description} answered, {self.majority} needed ({errors})"
            )
        return answers

    # -- session ----------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        with self._lock:
            self._ttl = ttl
            timeout = min(self._timeout, ttl / 4)
            if timeout < self._timeout:
                # Requests must time out well within the renewal interval (TTL / 3).
                self._timeout = timeout
                self._instances = self._connect(timeout)
        sid = uuid.uuid4().hex
        key = self._key("session", sid)
        t_sent = time.monotonic()
        results = self._fanout(lambda inst: inst.client.set(key, b"1", px=self._ttl_ms))
        created = [i for i, ok in self._answers(results, "opening a session") if ok]
        if len(created) < self.majority:
            raise StoreUnavailable(f"could not create a session on a majority of {self.n}")
        self._sid = sid
        self._renewed_at = t_sent
        return ttl

    def renew_session(self, held: frozenset[RedisTicket]) -> None:
        t_sent = time.monotonic()
        key, ttl_ms = self._key("session", self._sid), self._ttl_ms
        results = self._fanout(lambda inst: inst.client.pexpire(key, ttl_ms), renewal=True)
        renewed = frozenset(i for i, r in enumerate(results) if r is True)
        missing = sum(1 for r in results if r is False)
        if len(renewed) < self.majority:
            if missing > self.n - self.majority:
                raise SessionExpired(
                    f"session {self._sid} expired on {missing} of {self.n} Redis instances"
                )
            if t_sent - self._renewed_at >= self._ttl:
                # Not renewed on a majority for a whole TTL: it can back no leadership any
                # more (e.g. gone on an instance restarted empty, another one down), and it
                # must not be revived there. Start a new one.
                raise SessionExpired(
                    f"session {self._sid} not renewed on a majority of {self.n} Redis "
                    f"instances for {self._ttl:g} s (renewed on {len(renewed)}, missing on "
                    f"{missing})"
                )
            self._answers(results, "renewing the session")
            raise StoreUnavailable(f"session renewed on {len(renewed)} of {self.n} instances")
        with self._lock:
            self._renewed_at = t_sent
            self._renewals.append((t_sent, renewed))
            for ticket in self._holding:
                if len(renewed & ticket.acquired) < self.majority:
                    ticket.majority_lost = True
            lost = {t for t in self._holding if t.majority_lost and t in held}
            unadopted = any(t.majority_lost and t not in held for t in self._holding)
            self._holding -= lost
        for ticket in lost:
            self.report_loss(ticket, f"its session was renewed on only {len(renewed)} of "
                                     f"{self.n} Redis instances, too few of those it won on")
        if unadopted:
            # Not yet held by the core: do not let this renewal extend its deadline.
            raise StoreUnavailable("a leadership won during this renewal lost its majority")

    def close_session(self) -> None:
        if not self._sid:
            return
        key = self._key("session", self._sid)
        with self._lock:
            channels = {self._key("changed", t.election) for t in self._holding}
            self._holding.clear()
        self._sid = ""

        def end(inst: _Instance) -> None:
            pipe = inst.client.pipeline(transaction=False)
            pipe.delete(key)
            for channel in channels:
                pipe.publish(channel, b"closed")
            pipe.execute()

        self._fanout(end)

    # -- candidates -------------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> RedisTicket:
        if not self._sid:
            raise SessionExpired("no Redis session is open")
        ticket = RedisTicket(election, candidate_id, uuid.uuid4().hex, sid=self._sid,
                             value=value)
        keys = [self._key("contenders", election), self._key("session", self._sid)]
        args: list[str | bytes] = [ticket.key, f"{self._sid}\n{candidate_id}\n".encode() + value]
        results = self._fanout(lambda inst: inst.register(keys, args))
        if sum(1 for r in results if r == 1) < self.majority:
            with contextlib.suppress(StoreUnavailable):  # leave no partial registration
                self._unregister(ticket)
            if sum(1 for r in results if r == 0) > self.n - self.majority:
                raise SessionExpired(f"session {self._sid} is gone on a majority of {self.n}")
            self._answers(results, f"enqueueing in {election!r}")
            raise StoreUnavailable(f"enqueueing in {election!r}: registered on too few")
        return ticket

    def _unregister(self, ticket: RedisTicket) -> int:
        registry = self._key("contenders", ticket.election)
        results = self._fanout(lambda inst: inst.client.hdel(registry, ticket.key))
        return sum(1 for r in results if not isinstance(r, StoreUnavailable))

    def _states(self, election: str, sid: str) -> list[lua.State]:
        keys = [self._key("leader", election), self._key("counter", election),
                self._key("session", sid)]
        args = [self._key("session", "")]
        results = self._fanout(lambda inst: lua.State.parse(inst.state(keys, args)))
        return [s for _, s in self._answers(results, f"reading election {election!r}")]

    def try_lead(self, ticket: RedisTicket) -> Step:
        self._listen()
        bell = _BellSignal(self._bell, ticket.election)  # armed before the read
        if ticket.sid != self._sid:
            raise SessionExpired(f"the session of {ticket.candidate_id} was replaced")
        states = self._states(ticket.election, ticket.sid)
        if sum(1 for s in states if s.own_pttl == -2) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        busy = [s for s in states if s.held and s.sid != ticket.sid]
        if len(busy) > self.n - self.majority:
            return self._wait(bell, lua.holder_expiry(busy))
        proposal = max(s.counter for s in states) + 1
        keys = [self._key("leader", ticket.election), self._key("counter", ticket.election),
                self._key("session", ticket.sid)]
        args: list[Any] = [ticket.sid, ticket.key, proposal, ticket.candidate_id, ticket.value,
                           0, self._ttl_ms, self._key("session", ""),
                           self._key("changed", ticket.election)]
        t_sent = time.monotonic()
        results = self._fanout(lambda inst: inst.acquire(keys, args))
        took = time.monotonic() - t_sent
        codes = [int(r[0]) if not isinstance(r, StoreUnavailable) else None for r in results]
        acquired = frozenset(i for i, code in enumerate(codes) if code == 1)
        if len(acquired) >= self.majority and took < self._ttl * (1 - MAX_DRIFT):
            with self._lock:
                if not any(t >= t_sent and len(renewed & acquired) < self.majority
                           for t, renewed in self._renewals):
                    ticket.token, ticket.vseq, ticket.acquired = proposal, 0, acquired
                    ticket.majority_lost = False
                    self._holding.add(ticket)
                    return Won(proposal)
        if acquired:
            self._release(ticket)
        if codes.count(-1) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        if 2 in codes or len(acquired) >= self.majority:
            # A counter moved on, or we were too slow or raced a renewal: again at once.
            return Wait(bell, retry_at=time.monotonic())
        # A split vote: retry after a random pause, not on the bell our releases ring.
        return Wait(NoSignal(), retry_at=time.monotonic() + random.uniform(0.005, 0.05))

    def _wait(self, bell: Signal, expires_in: float) -> Wait:
        """Wait on the bell, re-stepping when a holder's session may have expired or
        after the polling fallback (a message can be lost), whichever is first."""
        poll = min(self._ttl / 4, 1.0) if self._ttl else 1.0
        return Wait(bell, retry_at=time.monotonic() + min(expires_in, poll))

    def _release(self, ticket: RedisTicket) -> int:
        keys = [self._key("leader", ticket.election)]
        args = [ticket.key, self._key("changed", ticket.election)]
        results = self._fanout(lambda inst: inst.release(keys, args))
        return sum(1 for r in results if not isinstance(r, StoreUnavailable))

    def withdraw(self, ticket: RedisTicket) -> None:
        with self._lock:
            self._holding.discard(ticket)
        if min(self._release(ticket), self._unregister(ticket)) < self.majority:
            raise StoreUnavailable(
                f"withdrawing from {ticket.election!r} reached fewer than {self.majority} "
                "Redis instances; the rest free up when the session expires"
            )

    # -- leader operations ------------------------------------------------------------

    def _leader_write(self, ticket: RedisTicket, action: str,
                      call: Callable[[_Instance], Any]) -> None:
        results = self._fanout(call)
        done = sum(1 for r in results if r == 1)
        refused = sum(1 for r in results if r == 0)
        if done >= self.majority:
            return
        if refused > self.n - self.majority:
            raise NotLeader(
                f"{action} refused by the store: {ticket.candidate_id} does not lead "
                f"election {ticket.election!r} on a majority of {self.n} Redis instances"
            )
        self._answers(results, action)
        raise StoreUnavailable(f"{action} in {ticket.election!r}: no majority either way")

    def proclaim(self, ticket: RedisTicket, value: bytes) -> None:
        vseq = ticket.vseq + 1
        keys = [self._key("leader", ticket.election), self._key("session", ticket.sid)]
        args: list[Any] = [ticket.key, ticket.token, value, vseq,
                           self._key("changed", ticket.election)]
        self._leader_write(ticket, "proclaim", lambda inst: inst.proclaim(keys, args))
        ticket.vseq = vseq

    def guarded_write(self, ticket: RedisTicket, key: str, value: bytes) -> None:
        keys = [self._key("leader", ticket.election), self._key("session", ticket.sid),
                self._key("data", key)]
        args: list[Any] = [ticket.key, ticket.token, value, next(self._seq)]
        self._leader_write(ticket, "guarded write", lambda inst: inst.guarded_write(keys, args))

    def read(self, key: str) -> bytes | None:
        name = self._key("data", key)
        results = self._fanout(
            lambda inst: list[Any](inst.client.hmget(name, "value", "token", "seq")))
        best: tuple[int, int, bytes] | None = None
        for _, (value, token, seq) in self._answers(results, f"reading {key!r}"):
            if value is not None:
                found = (int(token), int(seq), bytes(value))
                best = found if best is None or found[:2] > best[:2] else best
        return None if best is None else best[2]

    # -- observing --------------------------------------------------------------------

    def _current(self, election: str) -> tuple[LeaderInfo | None, float]:
        """The leader a majority agrees on, and seconds until its session (or, with no
        leader, any holder's) may expire."""
        states = [s for s in self._states(election, "") if s.held]
        groups: dict[tuple[str, int], list[lua.State]] = {}
        for state in states:
            groups.setdefault((state.ticket, state.token), []).append(state)
        for group in groups.values():
            if len(group) >= self.majority:
                best = max(group, key=lambda s: s.vseq)
                info = LeaderInfo(election, best.candidate_id, best.value, best.token)
                return info, lua.holder_expiry(group)
        return None, lua.holder_expiry(states)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._current(election)[0]

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        self._listen()
        bell = _BellSignal(self._bell, election)  # armed before the read
        current, expires_in = self._current(election)
        return current, self._wait(bell, expires_in)

    def contenders(self, election: str) -> list[Contender]:
        keys, args = [self._key("contenders", election)], [self._key("session", "")]
        results = self._fanout(lambda inst: list[Any](inst.contenders(keys, args)))
        answers = self._answers(results, f"listing the contenders of {election!r}")
        seen: dict[bytes, tuple[int, bytes]] = {}
        for _, reply in answers:
            for field, entry in zip(reply[::2], reply[1::2], strict=True):
                count, _ = seen.get(bytes(field), (0, b""))
                seen[bytes(field)] = (count + 1, bytes(entry))
        needed = max(1, len(answers) - (self.n - self.majority))
        found = []
        for count, entry in seen.values():
            if count >= needed:
                _, candidate_id, value = entry.split(b"\n", 2)
                found.append(Contender(candidate_id.decode(), value))
        return sorted(found, key=lambda c: c.candidate_id)

    # -- notifications ----------------------------------------------------------------

    def _listen(self) -> None:
        """Starts one subscriber thread per instance (once)."""
        with self._lock:
            if self._listeners or self._stop.is_set():
                return
            self._listeners = [
                threading.Thread(target=self._subscribe, args=(inst,), daemon=True,
                                 name=f"tenure-redis-sub-{inst.address}")
                for inst in self._instances
            ]
            for thread in self._listeners:
                thread.start()

    def _subscribe(self, inst: _Instance) -> None:
        pattern = self._key("changed", "*")
        skip = len(self._key("changed", ""))
        while not self._stop.is_set():
            pubsub = inst.client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(pattern)
                self._bell.ring(_Bell.ALL)  # (re)connected: waiters re-read the state
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=WAIT_SLICE)
                    if message is not None and message["type"] == "pmessage":
                        self._bell.ring(message["channel"][skip:].decode())
            except (redis.RedisError, OSError, ValueError) as exc:
                log.debug("subscriber on %s: %s", inst.address, exc)
                self._bell.ring(_Bell.ALL)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        for thread in self._listeners:
            thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._renew_pool.shutdown(wait=False, cancel_futures=True)
        for inst in self._instances:
            inst.client.close()


def _database(url: BackendURL) -> int:
    path = url.path.strip("/")
    if not path:
        return 0
    if not path.isdigit():
        raise ConfigError(
            f"{url.redacted}: the path {url.path!r} must be a database number such as /0"
        )
    return int(path)


def _tls_options(opts: Options) -> dict[str, Any]:
    # Checked here (readable PEM, cert and key together), but passed as paths: redis-py
    # takes the client certificate and key only as files (ssl.load_cert_chain).
    opts.pem("ca")
    opts.pem_pair("cert", "key")
    options: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required"}
    for name, kwarg in (("ca", "ssl_ca_certs"), ("cert", "ssl_certfile"),
                        ("key", "ssl_keyfile")):
        if (path := opts.optional(name)) is not None:
            options[kwarg] = str(Path(path).expanduser())
    return options
