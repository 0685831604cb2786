"""How :mod:`tenure.adapters.redis` reaches N *independent* Redis instances and decides
by majority (``M = N // 2 + 1``): the connection options, one client per instance, the
parallel fan-out, and change notifications over pub/sub.

Promises: :meth:`Quorum.fanout` runs one call on every instance in parallel and hands
back each instance's answer or its failure as StoreUnavailable (it never raises);
:meth:`Quorum.answers` lets a call succeed only when at least M instances answered, else
StoreUnavailable -- or ConfigError when more than N - M refused the credentials
(retrying cannot help). :meth:`Quorum.signal`, armed before a read, fires once messages
of its :class:`Feed` for its topic arrived from as many instances as it asks (one by
default; fewer once PARTIAL_GRACE passed after the first) after it was armed, or a
subscription of that feed was (re)made or broke (a message may have been missed then);
:meth:`Quorum.note` is the highest number such messages carried for a topic.
A feed is subscribed (one connection and thread per instance) only once a signal of it
is first asked for, so a client that never observes receives no change messages. A
*direct* feed has no threads: the waiting threads read its connections themselves.

Does not: retry (the clients have no retries, so a fault shows at once; the core
retries steps), make a call atomic across instances or roll back a partial one, judge
whether the answers agree (the caller counts what a majority said), or deliver every
message (pub/sub is at most once and says nothing of key expiry: callers also re-read
on a timer). Only standalone primaries: no Redis Cluster, no Sentinel.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tenure.config import BackendURL
from tenure.errors import ConfigError, StoreUnavailable
from tenure.options import Options
from tenure.readiness import wait_readable
from tenure.store import Signal

log = logging.getLogger("tenure.adapters.redis")

R = TypeVar("R")
S = TypeVar("S")

PASSWORD_ENV = "TENURE_REDIS_PASSWORD"
LISTEN_SLICE = 1.0
"""Longest a subscriber thread blocks before checking for close (which interrupts it
anyway by closing the connections): an idle client wakes once a second per subscription."""
DEFAULT_TIMEOUT = 1.0
KEEPALIVE_PROBES = 2
"""Unanswered TCP keepalive probes after which a pub/sub connection counts as dead."""
OPTIONS = {
    "timeout": "seconds per request (default 1; capped at TTL / 4)",
    "password_file": "file holding the password",
    "ca": "CA bundle for rediss://",
    "cert": "client certificate for rediss://",
    "key": "client key for rediss://",
}


#: What a redis-py call raises when a request fails or its client was closed under it
#: (a connection closed by another thread's close() surfaces as ValueError or as
#: AttributeError on its dropped parser buffer, and with hiredis as TypeError from
#: polling the socket it set to None, not as RedisError).
CLIENT_ERRORS = (redis.RedisError, OSError, ValueError, AttributeError, TypeError)


@dataclass(frozen=True)
class Settings:
    """Where the instances are and how to connect to each (``options`` are
    ``redis.Redis`` keyword arguments: db, user, password, TLS)."""

    hosts: tuple[tuple[str, int], ...]
    description: str
    timeout: float
    options: dict[str, Any]

    @classmethod
    def from_url(cls, url: BackendURL, opts: Options) -> Settings:
        n = len(url.hosts)
        if n % 2 == 0:
            raise ConfigError(
                f"{url.redacted} names {n} Redis instances; use an odd number (3 or 5, or 1 "
                f"for development): a majority of {n} is {n // 2 + 1}, so {n} instances "
                f"survive no more failures than {n - 1} would"
            )
        if len(set(url.hosts)) != n:
            raise ConfigError(f"{url.redacted} names an instance twice; list each once")
        options: dict[str, Any] = {"db": _database(url)}
        if url.username:  # redis://:password@host is Redis's default user
            options["username"] = url.username
        password = opts.secret("password", env=PASSWORD_ENV)
        if password is not None:
            options["password"] = password
        if url.scheme == "rediss":
            options.update(_tls_options(opts))
        elif given := [name for name in ("ca", "cert", "key") if opts.given(name)]:
            raise ConfigError(
                f"option(s) {', '.join(given)} need TLS; use rediss:// instead of redis://"
            )
        timeout = opts.duration("timeout", DEFAULT_TIMEOUT, low=0.0, high=300.0)
        return cls(url.hosts, url.redacted, timeout, options)


class Instance(Generic[S]):
    """One Redis instance: a client without retries (a fault must show at once), what
    ``prepare`` made for that client (the adapter's scripts), and ``subscriber``, the
    client of the pub/sub connections: like ``client``, plus TCP keepalive probes."""

    def __init__(self, host: str, port: int, timeout: float, options: dict[str, Any],
                 prepare: Callable[[redis.Redis], S]) -> None:
        self.address = f"{host}:{port}"
        self.client = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), **options,
        )
        # Nothing is sent on a subscription and a direct feed is read only while
        # someone waits, so a peer gone without a FIN/RST (host down, cut link) would
        # never show and every wake would wait for the polling fallback: the kernel's
        # keepalive probes find it with no thread of ours, within keepalive_after().
        self.subscriber = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), socket_keepalive=True,
            socket_keepalive_options=keepalive_options(timeout), **options,
        )
        self.scripts = prepare(self.client)
        self.lane = Lane(self.client)

    def close(self) -> None:
        """Closes both clients and the lane (and the connections in use: subscribers
        stop at once)."""
        self.client.close()
        self.subscriber.close()
        self.lane.close()


class Lane:
    """One connection of an instance kept for :meth:`Quorum.run_script` (the scripts of
    the handover path), used by one thread at a time: :meth:`take` never waits, and a
    caller that finds it busy goes the pool's way.

    Hand-written around redis-py's pool because a pool checkout and release cost ~70 us
    of CPU per request on the handover path (pid check, connection-count metrics, and a
    probe of the socket for unread data). What that probe guards against -- a reply
    left unread on a reused connection -- cannot happen here: a request whose reply was
    not read whole (error, timeout) disconnects the lane, and the next use connects
    again. ``requests`` counts the requests sent on it."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self.conn: Any = pool.connection_class(**pool.connection_kwargs)
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0

    def take(self) -> bool:
        """True if the caller now has the lane (give it back with :meth:`give_back`)."""
        if self._closed or not self._lock.acquire(blocking=False):
            return False
        if self._closed:
            self._lock.release()
            return False
        return True

    def give_back(self) -> None:
        self._lock.release()

    @property
    def connected(self) -> bool:
        return getattr(self.conn, "_sock", None) is not None

    def connect(self) -> Exception | None:
        """With the lane taken: connects it if needed; what failed, or None."""
        if self.connected:
            return None
        try:
            self.conn.connect()
        except CLIENT_ERRORS as exc:
            with contextlib.suppress(*CLIENT_ERRORS):
                self.conn.disconnect()
            return exc
        return None

    def connect_later(self) -> None:
        """Connects the lane if nobody uses it (a pool thread: never the caller's)."""
        if self.take():
            try:
                if (exc := self.connect()) is not None:
                    log.debug("script connection: %s", exc)
            finally:
                self.give_back()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(*CLIENT_ERRORS):
            self.conn.disconnect()


def keepalive_options(timeout: float) -> dict[int, int]:
    """TCP keepalive settings for a pub/sub connection with request ``timeout`` (at
    most TTL / 4 once a session is open): idle 2 x timeout, then KEEPALIVE_PROBES probes
    ``timeout`` apart, in whole seconds (the kernel's unit), at least 1 -- a dead peer
    is noticed after :func:`keepalive_after` s: 3 s at TTL 1 s, 4 s from TTL 4 s on.
    Options the platform lacks are left out (macOS calls TCP_KEEPIDLE TCP_KEEPALIVE)."""
    idle, interval = max(1, math.ceil(2 * timeout)), max(1, math.ceil(timeout))
    wanted = {"TCP_KEEPIDLE" if hasattr(socket, "TCP_KEEPIDLE") else "TCP_KEEPALIVE": idle,
              "TCP_KEEPINTVL": interval, "TCP_KEEPCNT": KEEPALIVE_PROBES}
    return {getattr(socket, name): value for name, value in wanted.items()
            if hasattr(socket, name)}


def keepalive_after(timeout: float) -> int:
    """Seconds of silence after which keepalive declares a pub/sub peer dead."""
    return max(1, math.ceil(2 * timeout)) + KEEPALIVE_PROBES * max(1, math.ceil(timeout))


class CredentialsRefused(StoreUnavailable):
    """An instance refused the credentials (an input error, unlike an outage)."""


@dataclass(frozen=True)
class Feed:
    """A kind of message: a channel ``pattern`` (``<prefix>*``; the topic is what the
    ``*`` matched) or ONE ``channel`` (the topic is the message itself, up to a space;
    a whole number after the space is a *note*, see :meth:`Quorum.note`)."""

    channel: str
    pattern: bool = False
    direct: bool = False
    """Read by the waiting threads themselves (no subscriber thread, no thread hop
    between a message and the waiter it wakes): only for a feed whose messages are few
    and addressed to this client, since nothing reads it while nobody waits."""

    def parse(self, channel: bytes, data: bytes) -> tuple[str, int | None]:
        """The topic a message on ``channel`` with ``data`` rings, and its note."""
        if self.pattern:
            return channel[len(self.channel) - 1:].decode(), None
        topic, _, note = data.decode().partition(" ")
        return topic, int(note) if note.isdigit() else None


class Bell:
    """Per-(feed, topic) change counters, rung by the subscribers (``source``: the
    instance's index); ``ring(feed, ALL)`` after a (re)subscription wakes the waiters of
    every topic of that feed. ``notes`` keeps the highest note each (feed, topic)
    carried."""

    ALL = ""  # never a topic (election names are validated non-empty)

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.counts: dict[tuple[str, str], int] = {}
        self.sources: dict[tuple[str, str], dict[int, int]] = {}
        self.notes: dict[tuple[str, str], int] = {}

    def ring(self, feed: str, topic: str, note: int | None = None, source: int = 0) -> None:
        with self.cond:
            self.counts[feed, topic] = self.counts.get((feed, topic), 0) + 1
            rung = self.sources.setdefault((feed, topic), {})
            rung[source] = rung.get(source, 0) + 1
            if note is not None:
                self.notes[feed, topic] = max(note, self.notes.get((feed, topic), note))
            self.cond.notify_all()


CLOSE_WAIT = 1.0
"""Longest a closing direct feed waits for its reader to leave its poll() (woken at once)."""

RESUBSCRIBE_FIRST = 0.05
RESUBSCRIBE_MAX = 0.5
"""Seconds between a direct feed's attempts to subscribe again after a drop: the first
attempt at once, then RESUBSCRIBE_FIRST, doubling up to RESUBSCRIBE_MAX."""

PARTIAL_GRACE = 0.02
"""Seconds a signal that needs several instances' messages waits for the rest once the
first arrived (a message can be lost, or an instance may have nobody to wake)."""


class BellSignal(Signal):
    """Fires once the bell rang for ``topic`` of ``feed`` from ``needed`` instances --
    or from fewer, PARTIAL_GRACE after the first of them -- or for all of the feed, from
    any, after it was armed. :meth:`interrupt` (any thread) makes it fire at once, also
    while its thread is the direct feed's reader (the reader's poll() also waits on a
    pipe the interrupt writes to), so the core needs no cancel poll."""

    interruptible = True

    def __init__(self, bell: Bell, feed: str, topic: str, needed: int = 1,
                 reader: DirectReader | None = None) -> None:
        self._bell, self._feed, self._topic, self._needed = bell, feed, topic, needed
        self._reader = reader
        self._partial_since: float | None = None
        self._interrupted = False
        with bell.cond:
            self._all = self._all_count()
            self._mark = dict(bell.sources.get((feed, topic), {}))

    def _all_count(self) -> int:
        return self._bell.counts.get((self._feed, Bell.ALL), 0)

    def _rung(self) -> int:
        """Instances whose message for the topic arrived since arming (needed: all)."""
        if self._all_count() != self._all:
            return self._needed
        rung = self._bell.sources.get((self._feed, self._topic), {})
        return sum(1 for i, c in rung.items() if c > self._mark.get(i, 0))

    def interrupt(self) -> None:
        """Fires this signal, now and for every later wait. Takes the bell's lock, which
        no thread holds for long (never across a blocking read)."""
        with self._bell.cond:
            self._interrupted = True
            self._bell.cond.notify_all()
            if self._reader is not None:
                self._reader.poke(self)

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + max(0.0, timeout)
        with self._bell.cond:
            while True:
                if self._interrupted:
                    return True
                rung = self._rung()
                now = time.monotonic()
                if rung >= self._needed:
                    return True
                if rung and self._partial_since is None:
                    self._partial_since = now
                if self._partial_since is not None and now >= self._partial_since + PARTIAL_GRACE:
                    return True
                until = end if self._partial_since is None else \
                    min(end, self._partial_since + PARTIAL_GRACE)
                if now >= end:
                    return False
                if self._reader is None or not self._reader.pump(until - now, self):
                    self._bell.cond.wait(until - now)


class DirectReader:
    """A direct feed's subscriptions (one per instance), read by whichever waiting
    thread takes the reader role (:meth:`pump`, called with the bell's lock held); the
    others wait on the bell. A broken subscription is made again by a thread of its own
    (at once, then backing off to every RESUBSCRIBE_MAX s until it works), which rings
    the whole feed once it is back; at most one subscription per instance is kept."""

    def __init__(self, bell: Bell, feed: str, spec: Feed, instances: list[Instance[Any]],
                 stop: threading.Event) -> None:
        self._bell, self._feed, self._spec, self._stop = bell, feed, spec, stop
        self._instances = instances
        self._subs: list[Any] = [None] * len(instances)  # redis PubSub, None: broken
        self._unread = [False] * len(instances)
        """Instances whose client may hold received bytes not yet parsed (after the
        subscription's confirmation): drained before the next poll()."""
        self._fixing: set[int] = set()
        self._reading: object | None = None
        """The signal whose thread is the reader (None: nobody reads)."""
        self._closed = False
        # Written by poke() to end the reader's poll() (an interrupted signal). Level-
        # triggered: drained by the reader that sees it.
        self._poke_r, self._poke_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe_open = True

    def start(self, pool: ThreadPoolExecutor, timeout: float) -> None:
        """Subscribes on every instance in parallel and waits up to ``timeout`` for the
        confirmations (a signal armed after this misses nothing they cover)."""
        futures = [pool.submit(self._subscribe, i) for i in range(len(self._instances))]
        wait_futures(futures, timeout=timeout)
        for i, future in enumerate(futures):
            ok = future.done() and future.result()
            if not ok:
                self._broken(i)

    def _subscribe(self, index: int) -> bool:
        pubsub = self._instances[index].subscriber.pubsub()  # type: ignore[no-untyped-call]
        try:
            if self._spec.pattern:
                pubsub.psubscribe(self._spec.channel)
            else:
                pubsub.subscribe(self._spec.channel)
            end = time.monotonic() + LISTEN_SLICE
            while time.monotonic() < end:
                message = pubsub.get_message(timeout=end - time.monotonic())
                if message is not None and message["type"] in ("subscribe", "psubscribe"):
                    break
            else:
                raise redis.TimeoutError("no subscription confirmation")
        except CLIENT_ERRORS as exc:
            log.debug("subscriber on %s: %s", self._instances[index].address, exc)
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()
            return False
        with self._bell.cond:
            if self._stop.is_set():
                pubsub.close()
                return False
            if self._subs[index] is not None:
                # start() gave up on a slow first try and _fix's try won the race (or
                # the reverse): keep the one in place, close this one.
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
                return True
            self._subs[index] = pubsub
            self._unread[index] = True
        self._bell.ring(self._feed, Bell.ALL)  # (re)subscribed: re-read
        return True

    def _broken(self, index: int, seen: Any = None) -> None:
        """Drops instance ``index``'s subscription (bell lock held or not) and starts
        the thread that makes it again; rings the feed (a message may be lost).
        ``seen``: the subscription found broken -- nothing is done if it is no longer
        the current one (closed, or already made again)."""
        with self._bell.cond:
            if seen is not None and self._subs[index] is not seen:
                return
            pubsub, self._subs[index] = self._subs[index], None
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            fixing = index in self._fixing or self._stop.is_set()
            self._fixing.add(index)
        self._bell.ring(self._feed, Bell.ALL)
        if not fixing:
            threading.Thread(target=self._fix, args=(index,), daemon=True,
                             name=f"tenure-redis-resubscribe-{index}").start()

    def _fix(self, index: int) -> None:
        # At once first: a drop noticed while nobody waits has already rung the feed,
        # so only the resubscription's ring tells a signal armed since then to re-read.
        pause = 0.0
        while not self._stop.wait(pause):
            if self._subscribe(index):
                break
            pause = min(RESUBSCRIBE_MAX, max(RESUBSCRIBE_FIRST, 2 * pause))
        with self._bell.cond:
            self._fixing.discard(index)

    def pump(self, timeout: float, owner: object) -> bool:
        """With the bell's lock held: reads the subscriptions for up to ``timeout`` s
        (until a message arrived, or :meth:`poke` for ``owner``) as the feed's reader,
        ringing the bell, and returns True; False at once if another thread is the
        reader (the caller waits on the bell instead: the reader wakes it when it gives
        the role up), or once closed."""
        if self._reading is not None or self._closed \
                or not any(p is not None for p in self._subs):
            return False  # (none: a resubscription rings the bell)
        self._reading = owner
        self._bell.cond.release()
        try:
            self._read(timeout)
        finally:
            self._bell.cond.acquire()
            self._reading = None
            if self._closed:
                self._close_pipe()
            self._bell.cond.notify_all()  # a waiter whose signal has not fired takes over
        return True

    def poke(self, owner: object) -> None:
        """With the bell's lock held: ends the current read if ``owner`` is the reader."""
        if self._reading is owner and not self._closed:
            with contextlib.suppress(BlockingIOError):  # full: a poke is pending anyway
                os.write(self._poke_w, b"x")

    def catch_up(self) -> None:
        """With the bell's lock held: rings what already arrived while nobody read (a
        late instance's copy of a wake already acted on), so that a signal armed next
        does not fire on it. One poll() with no wait; nothing if a reader is busy."""
        if self._reading is None and not self._closed:
            self._read(0.0)

    def _read(self, timeout: float) -> None:
        live = [(i, p) for i, p in enumerate(self._subs) if p is not None]
        # A drain reads until the client has no whole message left, so afterwards only
        # the socket can hold more: poll() first (a drain per idle wake-up would cost
        # a full client read each time).
        unread = [(i, p) for i, p in live if self._unread[i]]
        if unread and self._drain(unread):
            return
        self._drain(self._ready(live, timeout), readable=True)

    def _ready(self, live: list[tuple[int, Any]], timeout: float) -> list[tuple[int, Any]]:
        """The subscriptions of ``live`` whose sockets can be read within ``timeout``:
        one poll() on the sockets themselves -- cheaper than a client read with a timeout,
        and one call covers every instance (redis-py reads one connection at a time).
        Call only after draining them (redis-py may hold parsed-ahead bytes)."""
        fds: dict[int, tuple[int, Any]] = {}
        for i, p in live:
            sock = getattr(p.connection, "_sock", None)  # redis-py keeps it private
            fd = -1 if sock is None else sock.fileno()
            if fd < 0:
                self._broken(i, p)
            else:
                fds[fd] = (i, p)
        if not fds:
            return []
        ready, invalid = wait_readable([*fds, self._poke_r], timeout)
        for fd in invalid:  # a socket closed under us: subscribe again
            if fd in fds:
                self._broken(*fds[fd])
        if self._poke_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._poke_r, 4096)
        return [fds[fd] for fd in ready if fd in fds and fd not in invalid]

    def _drain(self, subs: list[tuple[int, Any]], readable: bool = False) -> bool:
        """Every message already received on ``subs``, rung; True if there was any.
        ``readable``: poll() saw each of their sockets readable."""
        got = False
        for index, pubsub in subs:
            if self._subs[index] is not pubsub or \
                    getattr(pubsub.connection, "_sock", None) is None:
                # Closed under us (close(), or dropped): reading would make redis-py
                # connect again, unsubscribed, racing the close.
                got = True
                self._broken(index, pubsub)
                continue
            try:
                # Known to hold a reply (poll() saw the socket readable, or the parser
                # has one): read it at once; unsure: get_message, which probes first.
                known = readable
                while (message := _read_message(pubsub) if known
                       else pubsub.get_message(timeout=0)) is not None:
                    got = True
                    if message["type"] in ("message", "pmessage"):
                        topic, note = self._spec.parse(message["channel"], message["data"])
                        self._bell.ring(self._feed, topic, note, source=index)
                    buffered = _buffered(pubsub)
                    if buffered is False:
                        break  # the rest, if any, is in the socket: poll() sees it
                    known = buffered is True
            except CLIENT_ERRORS as exc:
                # (AttributeError: redis-py's parser, when the connection is closed by
                # another thread in the middle of the read)
                log.debug("subscriber on %s: %s", self._instances[index].address, exc)
                got = True
                self._broken(index, pubsub)
            else:
                self._unread[index] = False
        return got

    def close(self) -> None:
        """Closes the subscriptions and wakes every waiter. A thread reading them is
        woken first and given up to CLOSE_WAIT s to leave (a socket closed under a read
        can make redis-py connect it again, racing the close)."""
        with self._bell.cond:
            if self._closed:
                return
            self._closed = True
            if self._reading is not None:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._poke_w, b"x")
                self._bell.cond.wait_for(lambda: self._reading is None, CLOSE_WAIT)
            subs, self._subs = self._subs, [None] * len(self._subs)
            if self._reading is None:  # else the reader closes it when it leaves
                self._close_pipe()
        for pubsub in subs:
            if pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
        self._bell.ring(self._feed, Bell.ALL)

    def _close_pipe(self) -> None:
        """With the bell's lock held: closes the poke pipe (once)."""
        if self._pipe_open:
            self._pipe_open = False
            os.close(self._poke_r)
            os.close(self._poke_w)


class Quorum(Generic[S]):
    """N instances (``settings``) with majority decisions; ``feeds`` names the kinds of
    pub/sub messages whose topics :meth:`signal` waits for."""

    def __init__(self, settings: Settings, *, prepare: Callable[[redis.Redis], S],
                 feeds: dict[str, Feed]) -> None:
        self.settings = settings
        self.n = len(settings.hosts)
        self.majority = self.n // 2 + 1
        self.timeout = settings.timeout
        self._prepare = prepare
        self._feeds = feeds
        self._lock = threading.Lock()
        self.instances = self._connect()
        self._pool = ThreadPoolExecutor(4 * self.n, thread_name_prefix="tenure-redis")
        self._renew_pool = ThreadPoolExecutor(self.n, thread_name_prefix="tenure-redis-renew")
        self._bell = Bell()
        self._stop = threading.Event()
        self._listeners: dict[str, list[threading.Thread]] = {}
        self._readers: dict[str, DirectReader] = {}
        self._connect_lanes()

    def _connect(self) -> list[Instance[S]]:
        return [Instance(host, port, self.timeout, self.settings.options, self._prepare)
                for host, port in self.settings.hosts]

    def _connect_lanes(self) -> None:
        """Several instances: connects the lanes in the background, so that the first
        scripts of a campaign already find them connected (one: at its first use)."""
        if self.n > 1:
            for inst in self.instances:
                self._pool.submit(inst.lane.connect_later)

    def cap_timeout(self, timeout: float) -> None:
        """Lowers the per-request timeout to at most ``timeout`` (new clients if so)."""
        with self._lock:
            if timeout < self.timeout:
                self.timeout = timeout
                self.instances = self._connect()
                self._connect_lanes()

    # -- majority calls ---------------------------------------------------------------

    def fanout(self, call: Callable[[Instance[S]], R], *, renewal: bool = False
               ) -> list[R | StoreUnavailable]:
        """``call`` on every instance in parallel (renewals on threads of their own); a
        failure, or no answer within 2 x timeout + 0.5 s, becomes StoreUnavailable."""
        instances = self.instances
        if self.n == 1:
            return [self._attempt(call, instances[0])]
        pool = self._renew_pool if renewal else self._pool
        futures = [pool.submit(self._attempt, call, inst) for inst in instances]
        done, _ = wait_futures(futures, timeout=2 * self.timeout + 0.5)
        return [
            f.result() if f in done else StoreUnavailable(f"{inst.address}: no answer")
            for f, inst in zip(futures, instances, strict=True)
        ]

    def run_script(self, pick: Callable[[S], Any], keys: list[Any], args: list[Any]
                   ) -> list[Any | StoreUnavailable]:
        """The script ``pick`` chooses from each instance's scripts, with ``keys`` and
        ``args``, on every instance in parallel, as :meth:`fanout` promises. Several
        instances: from THIS thread, the request is written to every instance's
        connection before the first answer is read (no hop to pool threads and back).
        Sent on the instances' lanes (:class:`Lane`) when this thread can take all of
        them; else through the pools, written first where each has a connected idle
        connection, otherwise as :meth:`fanout`."""
        instances = self.instances
        lanes = [inst.lane for inst in instances]
        taken = [lane for lane in lanes if lane.take()]
        try:
            if len(taken) == len(lanes):
                if self.n == 1:  # its request would wait for a connect anyway
                    if (exc := lanes[0].connect()) is not None:
                        return [_failure(instances[0], exc)]
                    return self._run_on_lanes(instances, pick, keys, args)
                if all(lane.connected for lane in lanes):
                    return self._run_on_lanes(instances, pick, keys, args)
        finally:
            for lane in taken:
                lane.give_back()
        # Lanes not connected are connected by pool threads (no instance's connect may
        # delay the requests to the others); this call goes through the pools.
        for lane in lanes:
            if not lane.connected:
                with contextlib.suppress(RuntimeError):  # the pool shut: closing
                    self._pool.submit(lane.connect_later)
        return self._run_pooled(pick, keys, args)

    def _run_on_lanes(self, instances: list[Instance[S]], pick: Callable[[S], Any],
                      keys: list[Any], args: list[Any]) -> list[Any | StoreUnavailable]:
        end = time.monotonic() + 2 * self.timeout + 0.5
        sent: list[tuple[Instance[S], StoreUnavailable | None]] = []
        results: list[Any | StoreUnavailable] = []
        try:
            for inst in instances:
                conn = inst.lane.conn
                sent.append((inst, None))  # before the send: a send cut short counts too
                try:
                    conn.send_command("EVALSHA", pick(inst.scripts).sha, len(keys), *keys,
                                      *args)
                except CLIENT_ERRORS as exc:
                    conn.disconnect()
                    sent[-1] = (inst, _failure(inst, exc))
                    continue
                inst.lane.requests += 1
            for inst, failed in sent:
                if failed is not None:
                    results.append(failed)
                    continue
                conn = inst.lane.conn
                try:
                    results.append(conn.read_response(
                        timeout=max(0.001, end - time.monotonic())))
                except redis.exceptions.NoScriptError:  # read whole: the lane stays usable
                    results.append(self._attempt(lambda i: pick(i.scripts)(keys, args), inst))
                except redis.ResponseError as exc:
                    results.append(_failure(inst, exc))
                except CLIENT_ERRORS as exc:
                    conn.disconnect()
                    results.append(_failure(inst, exc))
        except BaseException:
            # Anything else (KeyboardInterrupt, SystemExit from a signal handler in this
            # thread) leaves replies unread on the lanes not read yet: disconnect them, so
            # that no later script reads one of these replies as its own.
            for inst, _ in sent[len(results):]:
                with contextlib.suppress(*CLIENT_ERRORS):
                    inst.lane.conn.disconnect()
            raise
        return results

    def _run_pooled(self, pick: Callable[[S], Any], keys: list[Any], args: list[Any]
                    ) -> list[Any | StoreUnavailable]:
        """:meth:`run_script` through the clients' pools (a lane busy or not connected)."""
        instances = self.instances
        if self.n == 1 or not all(_warm(inst) for inst in instances):
            return self.fanout(lambda inst: pick(inst.scripts)(keys, args))
        end = time.monotonic() + 2 * self.timeout + 0.5
        sent: list[tuple[Instance[S], Any]] = []
        for inst in instances:
            pool = inst.client.connection_pool
            try:
                conn: Any = pool.get_connection()
            except CLIENT_ERRORS as exc:
                sent.append((inst, _failure(inst, exc)))
                continue
            try:
                conn.send_command("EVALSHA", pick(inst.scripts).sha, len(keys), *keys, *args)
            except CLIENT_ERRORS as exc:
                conn.disconnect()
                pool.release(conn)
                sent.append((inst, _failure(inst, exc)))
                continue
            sent.append((inst, conn))
        results: list[Any | StoreUnavailable] = []
        for inst, conn in sent:
            if isinstance(conn, StoreUnavailable):
                results.append(conn)
                continue
            results.append(self._answer(inst, conn, end, lambda i: pick(i.scripts)(keys, args)))
        return results

    def _answer(self, inst: Instance[S], conn: Any, end: float,
                again: Callable[[Instance[S]], Any]) -> Any:
        """The reply to the request sent on ``conn`` (read by ``end``), the connection
        given back; ``again`` runs it the client's way after NOSCRIPT (a restarted
        instance: the client loads the script)."""
        pool = inst.client.connection_pool
        try:
            reply = conn.read_response(timeout=max(0.001, end - time.monotonic()))
        except redis.exceptions.NoScriptError:
            pool.release(conn)
            return self._attempt(again, inst)
        except redis.ResponseError as exc:  # the connection stays usable
            pool.release(conn)
            return _failure(inst, exc)
        except CLIENT_ERRORS as exc:
            conn.disconnect()
            pool.release(conn)
            return _failure(inst, exc)
        pool.release(conn)
        return reply

    @staticmethod
    def _attempt(call: Callable[[Instance[S]], R], inst: Instance[S]) -> R | StoreUnavailable:
        try:
            return call(inst)
        except CLIENT_ERRORS as exc:
            return _failure(inst, exc)

    def answers(self, results: list[R | StoreUnavailable], action: str) -> list[tuple[int, R]]:
        """The successful answers with their instance's index, or StoreUnavailable if
        fewer than a majority (ConfigError if the credentials were refused)."""
        answers = [(i, r) for i, r in enumerate(results) if not isinstance(r, StoreUnavailable)]
        if len(answers) < self.majority:
            errors = "; ".join(str(r) for r in results if isinstance(r, StoreUnavailable))
            refused = sum(1 for r in results if isinstance(r, CredentialsRefused))
            if refused > self.n - self.majority:
                # Not transient: retrying cannot help, so campaigns must not wait it out.
                raise ConfigError(
                    f"{action}: Redis refused this client's credentials on {refused} of "
                    f"{self.n} instances of {self.settings.description} ({errors}); fix the "
                    f"user and password (URL, password_file option or {PASSWORD_ENV})"
                )
            raise StoreUnavailable(
                f"{action}: only {len(answers)} of {self.n} Redis instances of "
                f"{self.settings.description} answered, {self.majority} needed ({errors})"
            )
        return answers

    # -- notifications ----------------------------------------------------------------

    def signal(self, feed: str, topic: str, needed: int = 1) -> BellSignal:
        """A signal armed now for ``topic`` of ``feed``, fired by messages from
        ``needed`` instances (subscribes the feed on first use)."""
        if self._feeds[feed].direct:
            reader = self._direct(feed)
            with self._bell.cond:
                if self.n > 1:
                    # A late instance's copy of a wake already acted on must not fire
                    # the new signal. One instance sends no copies: a message not read
                    # yet is news the caller's next read sees anyway, and fires this
                    # signal at most once more (one extra step), so no poll() here.
                    reader.catch_up()
                return BellSignal(self._bell, feed, topic, needed, reader)
        self._listen(feed)
        return BellSignal(self._bell, feed, topic, needed)

    def _direct(self, feed: str) -> DirectReader:
        """The reader of a direct feed, subscribed on first use (by that caller)."""
        with self._lock:
            reader = self._readers.get(feed)
            if reader is not None:
                return reader
            reader = DirectReader(self._bell, feed, self._feeds[feed], self.instances,
                                  self._stop)
            self._readers[feed] = reader
            reader.start(self._pool, 2 * self.timeout + LISTEN_SLICE)
            return reader

    def note(self, feed: str, topic: str) -> int | None:
        """The highest note a message of ``topic`` of ``feed`` carried so far (from any
        instance), or None. Only a hint: messages can be lost or late."""
        with self._bell.cond:
            return self._bell.notes.get((feed, topic))

    def _listen(self, feed: str) -> None:
        """Starts one subscriber thread per instance for ``feed`` (once)."""
        with self._lock:
            if feed in self._listeners or self._stop.is_set():
                return
            threads = [
                threading.Thread(target=self._subscribe, args=(i, inst, feed), daemon=True,
                                 name=f"tenure-redis-{feed}-{inst.address}")
                for i, inst in enumerate(self.instances)
            ]
            self._listeners[feed] = threads
            for thread in threads:
                thread.start()

    def _subscribe(self, index: int, inst: Instance[S], feed: str) -> None:
        spec = self._feeds[feed]
        while not self._stop.is_set():
            pubsub = inst.subscriber.pubsub()  # type: ignore[no-untyped-call]
            try:
                if spec.pattern:
                    pubsub.psubscribe(spec.channel)
                else:
                    pubsub.subscribe(spec.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_SLICE)
                    if message is None:
                        continue
                    if message["type"] in ("subscribe", "psubscribe"):
                        # (re)subscribed: what was published before is unknown, re-read
                        self._bell.ring(feed, Bell.ALL)
                    elif message["type"] in ("message", "pmessage"):
                        topic, note = spec.parse(message["channel"], message["data"])
                        self._bell.ring(feed, topic, note, source=index)
            except CLIENT_ERRORS as exc:
                log.debug("subscriber on %s: %s", inst.address, exc)
                self._bell.ring(feed, Bell.ALL)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._renew_pool.shutdown(wait=False, cancel_futures=True)
        for reader in self._readers.values():
            reader.close()
        for inst in self.instances:
            inst.close()  # also shuts the subscribers' sockets: they stop at once
        for threads in self._listeners.values():
            for thread in threads:
                thread.join(timeout=2)


def _buffered(pubsub: Any) -> bool | None:
    """Whether the client holds a received reply it has not parsed yet: hiredis's reader
    says so exactly; redis-py's own parser only whether it holds no unread bytes at all
    (False), else None, as when unsure (redis-py keeps both private)."""
    parser = getattr(getattr(pubsub, "connection", None), "_parser", None)
    has_data = getattr(getattr(parser, "_reader", None), "has_data", None)
    if has_data is not None:
        return bool(has_data())
    unread = getattr(getattr(parser, "_buffer", None), "unread_bytes", None)
    return None if unread is None or unread() > 0 else False


def _read_message(pubsub: Any) -> dict[str, Any] | None:
    """``pubsub.get_message(timeout=0)`` for a subscription known to hold a reply (its
    socket polled readable, or its parser has one): the same read (a part of a reply
    times out the same way) without the probes of the socket get_message makes first
    (~90 us of CPU per wake-up on the handover path)."""
    response = pubsub.connection.read_response(disconnect_on_error=False,
                                               push_request=True, timeout=0)
    if response is None or pubsub.is_health_check_response(response):
        return None
    if isinstance(response, list) and len(response) == 3 and response[0] == b"message":
        # What handle_message returns for a message on a channel without a handler
        # (ours have none), without its bookkeeping for (un)subscribe replies.
        return {"type": "message", "pattern": None, "channel": response[1],
                "data": response[2]}
    message: dict[str, Any] | None = pubsub.handle_message(response)
    return message


def _failure(inst: Instance[Any], exc: Exception) -> StoreUnavailable:
    """A failed request as the answer of its instance (refused credentials apart)."""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return CredentialsRefused(f"{inst.address}: {type(exc).__name__}: {exc}")
    return StoreUnavailable(f"{inst.address}: {type(exc).__name__}: {exc}")


def _warm(inst: Instance[Any]) -> bool:
    """The instance's pool holds an idle connection that is connected (a request sent on
    it cannot block this thread in connect(); redis-py keeps both lists private)."""
    idle: list[Any] = getattr(inst.client.connection_pool, "_available_connections", [])
    return bool(idle) and getattr(idle[-1], "_sock", None) is not None


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
