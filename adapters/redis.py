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
* leadership: a hash ``<prefix>leader:<election>`` per instance holding session id,
  ticket, token, candidate id and value. A Lua script takes it on one instance if it is
  absent or its holder's session key is gone there (a dead session), so a renewal never
  touches per-election keys. A candidate leads if the script succeeded on M instances
  and the round came back within TTL x (1 - 0.5) of being sent (0.5 = the largest drift
  tenure accepts); otherwise it releases everywhere (compare-and-delete) and retries.
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
  ticket stays valid only while |R & A| >= M (else it is returned as lost). An
  acquisition that raced with a renewal is checked against it the same way.
* proclaim and guarded writes: scripts that check, per instance, that the leader key
  holds our ticket and token and that our session is alive; they succeed on M
  instances, else NotLeader (or StoreUnavailable when too few answered). Guarded data
  ``<prefix>data:<key>`` carries (token, seq); a read takes a majority and returns the
  value with the highest (token, seq). ``leader()`` reads a majority and reports a
  leader only if M instances agree on it with its session alive there.
* waiting: every acquire/release/proclaim PUBLISHes on ``<prefix>changed:<election>``;
  one pattern subscription per instance per client wakes the waiters of that election.
  A holder's session expiry is silent, so waiters also wake at the holder's session
  PTTL and at least every min(TTL / 4, 1 s). Nothing spins.
* order: Redis has no queue; waiting candidates are served in no particular order
  (whoever's acquisition round lands first; a split vote backs off randomly).
* contenders: ``enqueue`` registers the candidate in a hash ``<prefix>contenders:
  <election>`` on a majority (field = ticket, bound to the session: it counts only
  while the session key exists on that instance); ``withdraw`` deletes it. A listing
  reads a majority and keeps an entry seen live on at least (answers - (N - M))
  instances -- every registered live candidate is, since it is on M of N.

Clock reasoning: a renewal sent at t (local monotonic clock) arrives at each instance
later, and PEXPIRE sets expiry >= arrival + TTL >= t + TTL, so the core's deadline
t + TTL x (1 - drift) is covered on the renewed majority. Redis measures expiry with
the INSTANCE's wall clock, which is not monotonic: ``drift`` covers a difference in
clock rate, NOT a wall-clock step on a Redis host (keep NTP slewing, not stepping).

Persistence: the token guarantee needs every counter on a majority to survive: run
each instance with ``appendonly yes`` and ``appendfsync always`` (or accept losing at
most a minority of instances' data at once, and restart a wiped instance only after a
TTL has passed). An instance restarted WITHOUT its data lowers its counter; one such
instance of three is outvoted, but if a majority (or a single instance) loses its data
the next token can be LOWER than an earlier one. Use ``maxmemory-policy noeviction``.

Limits: N must be odd; N = 1 works but is not partition-safe (``StoreLimits``). Redis
Cluster and replica failover are not supported (a replica may lose acknowledged
counters); use independent primaries. TTL from 0.5 s to 1 day, in milliseconds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
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
from tenure.config import MAX_DRIFT, BackendURL, parse_duration_option
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    NotLeader,
    SessionExpired,
    StoreUnavailable,
)
from tenure.store import WAIT_SLICE, Contender, LeaderInfo, Store, StoreLimits, Ticket

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


@dataclass(frozen=True)
class _State:
    """One instance's view of an election (the STATE script's answer)."""

    counter: int
    own_pttl: int
    holder_pttl: int = -2
    sid: str = ""
    ticket: str = ""
    token: int = 0
    candidate_id: str = ""
    value: bytes = b""
    vseq: int = 0

    @property
    def held(self) -> bool:
        """A leader key whose holder's session is alive on this instance."""
        return bool(self.sid) and self.holder_pttl != -2

    @staticmethod
    def parse(reply: list[Any]) -> _State:
        if len(reply) < 3:
            return _State(int(reply[0]), int(reply[1]))
        return _State(
            int(reply[0]), int(reply[1]), int(reply[2]), reply[3].decode(), reply[4].decode(),
            int(reply[5]), reply[6].decode(), bytes(reply[7]), int(reply[8] or 0),
        )


class _Instance:
    """One Redis instance: a client without retries (a fault must show at once) and
    its scripts (EVALSHA, loaded again after a restart)."""

    def __init__(self, index: int, host: str, port: int, timeout: float,
                 options: dict[str, Any]) -> None:
        self.index = index
        self.address = f"{host}:{port}"
        self.client = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), **options,
        )
        self.state = self.client.register_script(lua.STATE)
        self.acquire = self.client.register_script(lua.ACQUIRE)
        self.release = self.client.register_script(lua.RELEASE)
        self.proclaim = self.client.register_script(lua.PROCLAIM)
        self.guarded_write = self.client.register_script(lua.GUARDED_WRITE)
        self.contenders = self.client.register_script(lua.CONTENDERS)


class _Bell:
    """Per-election change counters that waiters block on (rung by the subscribers)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}
        self._all = 0

    def mark(self, election: str) -> tuple[int, int]:
        with self._cond:
            return self._counts.get(election, 0), self._all

    def ring(self, election: str) -> None:
        with self._cond:
            self._counts[election] = self._counts.get(election, 0) + 1
            self._cond.notify_all()

    def ring_all(self) -> None:
        with self._cond:
            self._all += 1
            self._cond.notify_all()

    def wait(self, election: str, mark: tuple[int, int], timeout: float) -> bool:
        """True once something rang for ``election`` since ``mark``."""
        with self._cond:
            return self._cond.wait_for(lambda: self.mark(election) != mark, max(0.0, timeout))



class _CredentialsRefused(StoreUnavailable):
    """An instance refused the credentials (an input error, unlike an outage)."""

class RedisStore(Store):
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
            min_ttl=0.5, max_ttl=86400.0,
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
        self._won: dict[Ticket, frozenset[int]] = {}
        self._renewals: deque[tuple[float, frozenset[int]]] = deque(maxlen=64)
        self._bell = _Bell()
        self._stop = threading.Event()
        self._listeners: list[threading.Thread] = []
        self._seq = itertools.count(1)

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> RedisStore:
        options = dict(url.options)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in OPTIONS.items())
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for the redis backend; known "
                f"options are ttl, drift, {known}"
            )
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
        if url.username is not None:
            connection["username"] = url.username
        password = _password(url, options.pop("password_file", None))
        if password is not None:
            connection["password"] = password
        tls: dict[str, str] = {k: options.pop(k) for k in ("ca", "cert", "key") if k in options}
        if url.scheme == "rediss":
            connection.update(_tls_options(tls))
        elif tls:
            raise ConfigError(
                f"option(s) {', '.join(sorted(tls))} need TLS; use rediss:// instead of redis://"
            )
        timeout = DEFAULT_TIMEOUT
        if "timeout" in options:
            timeout = parse_duration_option("redis", "timeout", options.pop("timeout"), 0.0, 300.0)
        prefix = options.pop("prefix", DEFAULT_PREFIX)
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ConfigError(f"option prefix {prefix!r} must be non-empty, without spaces")
        return cls(url.hosts, description=url.redacted, prefix=prefix, timeout=timeout,
                   connection=connection)

    @property
    def description(self) -> str:
        return self._description

    def _connect(self, timeout: float) -> list[_Instance]:
        return [_Instance(i, host, port, timeout, self._connection)
                for i, (host, port) in enumerate(self.hosts)]

    # -- keys -----------------------------------------------------------------------

    def _session_key(self, sid: str) -> str:
        return f"{self.prefix}session:{sid}"

    def _leader_key(self, election: str) -> str:
        return f"{self.prefix}leader:{election}"

    def _counter_key(self, election: str) -> str:
        return f"{self.prefix}counter:{election}"

    def _contenders_key(self, election: str) -> str:
        return f"{self.prefix}contenders:{election}"

    def _channel(self, election: str) -> str:
        return f"{self.prefix}changed:{election}"

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

    def open_session(self, ttl: float) -> None:
        with self._lock:
            self._ttl = ttl
            timeout = min(self._timeout, ttl / 4)
            if timeout < self._timeout:
                # Requests must time out well within the renewal interval (TTL / 3).
                self._timeout = timeout
                self._instances = self._connect(timeout)
        sid = uuid.uuid4().hex
        key = self._session_key(sid)
        t_sent = time.monotonic()
        results = self._fanout(lambda inst: inst.client.set(key, b"1", px=self._ttl_ms))
        created = [i for i, ok in self._answers(results, "opening a session") if ok]
        if len(created) < self.majority:
            raise StoreUnavailable(f"could not create a session on a majority of {self.n}")
        self._sid = sid
        self._renewed_at = t_sent

    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        t_sent = time.monotonic()
        key, ttl_ms = self._session_key(self._sid), self._ttl_ms
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
            for ticket, acquired in self._won.items():
                if len(renewed & acquired) < self.majority:
                    ticket.extra["void"] = True
            unadopted = [t for t in self._won if t.extra.get("void") and t not in held]
        if unadopted:
            # Not yet held by the core: do not let this renewal extend its deadline.
            raise StoreUnavailable("a leadership won during this renewal lost its majority")
        return frozenset(t for t in held if t.extra.get("void"))

    def close_session(self) -> None:
        if not self._sid:
            return
        key = self._session_key(self._sid)
        with self._lock:
            channels = {self._channel(t.election) for t in self._won}
            self._won.clear()
        self._sid = ""

        def end(inst: _Instance) -> None:
            pipe = inst.client.pipeline(transaction=False)
            pipe.delete(key)
            for channel in channels:
                pipe.publish(channel, b"closed")
            pipe.execute()

        self._fanout(end)

    # -- candidates -------------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        if not self._sid:
            raise SessionExpired("no Redis session is open")
        extra: dict[str, object] = {"sid": self._sid, "value": value, "token": 0, "vseq": 0}
        ticket = Ticket(election, candidate_id, uuid.uuid4().hex, 0, extra)
        registry, entry = self._contenders_key(election), f"{self._sid}\n{candidate_id}\n"
        results = self._fanout(
            lambda inst: inst.client.hset(registry, ticket.key, entry.encode() + value))
        if sum(1 for r in results if not isinstance(r, StoreUnavailable)) < self.majority:
            with contextlib.suppress(StoreUnavailable):  # leave no partial registration
                self._unregister(ticket)
            self._answers(results, f"enqueueing in {election!r}")
        return ticket

    def _unregister(self, ticket: Ticket) -> int:
        registry = self._contenders_key(ticket.election)
        results = self._fanout(lambda inst: inst.client.hdel(registry, ticket.key))
        return sum(1 for r in results if not isinstance(r, StoreUnavailable))

    def _states(self, election: str, sid: str) -> list[tuple[int, _State]]:
        keys = [self._leader_key(election), self._counter_key(election), self._session_key(sid)]
        args = [self._session_key("")]
        results = self._fanout(lambda inst: _State.parse(inst.state(keys, args)))
        return self._answers(results, f"reading election {election!r}")

    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        self._listen()
        backoff = 0.05
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in {ticket.election!r} cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise CampaignTimeout(f"campaign in {ticket.election!r} timed out")
            mark = self._bell.mark(ticket.election)
            try:
                outcome = self._try_acquire(ticket)
                backoff = 0.05
            except SessionExpired:
                raise
            except StoreUnavailable as exc:
                log.info("campaign in %r: %s (retrying)", ticket.election, exc)
                outcome = time.monotonic() + backoff
                backoff = min(1.0, backoff * 2)
            if isinstance(outcome, int):
                return outcome
            self._wait(ticket.election, mark, outcome, deadline, cancelled)

    def _try_acquire(self, ticket: Ticket) -> int | float:
        """One attempt: the token if ``ticket`` now leads, else when to try again."""
        sid = str(ticket.extra["sid"])
        if sid != self._sid:
            raise SessionExpired(f"the session of {ticket.candidate_id} was replaced")
        states = self._states(ticket.election, sid)
        if sum(1 for _, s in states if s.own_pttl == -2) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        now = time.monotonic()
        busy = [s for _, s in states if s.held and s.sid != sid]
        if len(busy) > self.n - self.majority:
            expiries = [s.holder_pttl / 1000 for s in busy if s.holder_pttl >= 0]
            return now + (min(expiries) + 0.002 if expiries else math.inf)
        proposal = max(s.counter for _, s in states) + 1
        keys = [self._leader_key(ticket.election), self._counter_key(ticket.election),
                self._session_key(sid)]
        args: list[Any] = [sid, ticket.key, proposal, ticket.candidate_id, ticket.extra["value"], 0,
                self._ttl_ms, self._session_key(""), self._channel(ticket.election)]
        t_sent = time.monotonic()
        results = self._fanout(lambda inst: inst.acquire(keys, args))
        took = time.monotonic() - t_sent
        codes = [int(r[0]) if not isinstance(r, StoreUnavailable) else None for r in results]
        acquired = frozenset(i for i, code in enumerate(codes) if code == 1)
        if len(acquired) >= self.majority and took < self._ttl * (1 - MAX_DRIFT):
            with self._lock:
                void = any(t >= t_sent and len(renewed & acquired) < self.majority
                           for t, renewed in self._renewals)
                if not void:
                    ticket.extra.update(token=proposal, vseq=0, void=False)
                    self._won[ticket] = acquired
            if not void:
                return proposal
        if acquired:
            self._release(ticket)
        if codes.count(-1) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        if 2 in codes or len(acquired) >= self.majority:
            return time.monotonic()  # a counter moved on, or we were too slow: again now
        return time.monotonic() + random.uniform(0.005, 0.05)  # split vote: back off

    def _release(self, ticket: Ticket) -> int:
        keys = [self._leader_key(ticket.election)]
        args = [ticket.key, self._channel(ticket.election)]
        results = self._fanout(lambda inst: inst.release(keys, args))
        return sum(1 for r in results if not isinstance(r, StoreUnavailable))

    def withdraw(self, ticket: Ticket) -> None:
        with self._lock:
            self._won.pop(ticket, None)
        if min(self._release(ticket), self._unregister(ticket)) < self.majority:
            raise StoreUnavailable(
                f"withdrawing from {ticket.election!r} reached fewer than {self.majority} "
                "Redis instances; the rest free up when the session expires"
            )

    def _wait(self, election: str, mark: tuple[int, int], wake_at: float,
              deadline: float | None, cancelled: threading.Event) -> None:
        end = min(wake_at, time.monotonic() + self._poll_interval)
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in {election!r} cancelled")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise CampaignTimeout(f"campaign in {election!r} timed out")
            if now >= end:
                return
            if self._bell.wait(election, mark, min(WAIT_SLICE, end - now)):
                return

    @property
    def _poll_interval(self) -> float:
        return min(self._ttl / 4, 1.0) if self._ttl else 1.0

    # -- leader operations ------------------------------------------------------------

    def _leader_write(self, ticket: Ticket, action: str,
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

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        vseq = int(str(ticket.extra["vseq"])) + 1
        sid = str(ticket.extra["sid"])
        keys = [self._leader_key(ticket.election), self._session_key(sid)]
        args: list[Any] = [ticket.key, ticket.extra["token"], value, vseq,
                           self._channel(ticket.election)]
        self._leader_write(ticket, "proclaim", lambda inst: inst.proclaim(keys, args))
        ticket.extra["vseq"] = vseq

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        sid = str(ticket.extra["sid"])
        keys = [self._leader_key(ticket.election), self._session_key(sid),
                f"{self.prefix}data:{key}"]
        args: list[Any] = [ticket.key, ticket.extra["token"], value, next(self._seq)]
        self._leader_write(ticket, "guarded write", lambda inst: inst.guarded_write(keys, args))

    def read(self, key: str) -> bytes | None:
        name = f"{self.prefix}data:{key}"
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
        """The leader a majority agrees on, and when its session may expire next."""
        states = [s for _, s in self._states(election, "") if s.held]
        groups: dict[tuple[str, int], list[_State]] = {}
        for state in states:
            groups.setdefault((state.ticket, state.token), []).append(state)
        now = time.monotonic()
        for group in groups.values():
            if len(group) >= self.majority:
                best = max(group, key=lambda s: s.vseq)
                expiries = [s.holder_pttl / 1000 for s in group if s.holder_pttl >= 0]
                wake = now + min(expiries) + 0.002 if expiries else math.inf
                return LeaderInfo(election, best.candidate_id, best.value, best.token), wake
        expiries = [s.holder_pttl / 1000 for s in states if s.holder_pttl >= 0]
        return None, now + min(expiries) + 0.002 if expiries else math.inf

    def leader(self, election: str) -> LeaderInfo | None:
        return self._current(election)[0]

    def contenders(self, election: str) -> list[Contender]:
        keys, args = [self._contenders_key(election)], [self._session_key("")]
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

    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        self._listen()
        while True:
            mark = self._bell.mark(election)
            current, wake_at = self._current(election)
            now = time.monotonic()
            if current != known or now >= deadline:
                return current
            end = min(deadline, wake_at, now + self._poll_interval)
            while (now := time.monotonic()) < end:
                if self._bell.wait(election, mark, min(WAIT_SLICE, end - now)):
                    break

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
        pattern = self._channel("*")
        skip = len(self._channel(""))
        while not self._stop.is_set():
            pubsub = inst.client.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(pattern)
                self._bell.ring_all()  # (re)connected: waiters re-read the state
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=WAIT_SLICE)
                    if message is not None and message["type"] == "pmessage":
                        self._bell.ring(message["channel"][skip:].decode())
            except (redis.RedisError, OSError, ValueError) as exc:
                log.debug("subscriber on %s: %s", inst.address, exc)
                self._bell.ring_all()
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


# -- URL helpers ---------------------------------------------------------------------


def _database(url: BackendURL) -> int:
    path = url.path.strip("/")
    if not path:
        return 0
    if not path.isdigit():
        raise ConfigError(
            f"{url.redacted}: the path {url.path!r} must be a database number such as /0"
        )
    return int(path)


def _password(url: BackendURL, password_file: str | None) -> str | None:
    """From the URL, else ``password_file``, else $TENURE_REDIS_PASSWORD (never shown)."""
    if password_file is not None:
        if url.password is not None:
            raise ConfigError(
                "the redis URL has both a password and password_file; give only one"
            )
        try:
            return Path(password_file).expanduser().read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"password_file {password_file!r} cannot be read ({type(exc).__name__}); "
                "check the path and its permissions"
            ) from None
    if url.password is not None:
        return url.password
    return os.environ.get(PASSWORD_ENV) or None


def _tls_options(files: dict[str, str]) -> dict[str, Any]:
    if ("cert" in files) != ("key" in files):
        raise ConfigError("options cert and key go together: give both or neither")
    for name, path in files.items():
        if not os.access(Path(path).expanduser(), os.R_OK):
            raise ConfigError(f"option {name}: file {path!r} does not exist or is not readable")
    options: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required"}
    if "ca" in files:
        options["ssl_ca_certs"] = str(Path(files["ca"]).expanduser())
    if "cert" in files:
        options["ssl_certfile"] = str(Path(files["cert"]).expanduser())
        options["ssl_keyfile"] = str(Path(files["key"]).expanduser())
    return options
