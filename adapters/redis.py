"""The Redis backend: ``redis://[user:password@]host:port[,host:port,...][/db][?options]``
(``rediss://`` for TLS) over N *independent* Redis instances, decided by majority
(:mod:`~tenure.adapters.redis_quorum`; keys, scripts: :mod:`~tenure.adapters.redis_scripts`).

Mapping of the contract (M = N // 2 + 1; every decision needs M answers; keys are
``<prefix><kind>:<name>``):

* session: ``session:<id>``, PX = TTL, on every instance; a renewal is ONE ``PEXPIRE`` per
  instance, in parallel, whatever the number of elections. PEXPIRE never creates a key,
  so an expired session is never revived. Renewed on M: done; gone on more than N - M,
  or not renewed on M for a whole TTL: SessionExpired.
* try_lead: ONE script per instance (ACQUIRE, in parallel) reads the
  ``leader:<election>`` hash (session id, ticket, token, candidate id, value), the
  counter and the ticket's place in the queue, and takes the key where it is absent or
  its holder's session key is gone (so a renewal never touches per-election keys), no
  live entry is ahead of the ticket and the proposal is above the counter: Won if it
  took M and the round came back within TTL x (1 - 0.5) of being sent (0.5 = the
  largest drift tenure accepts). Else it releases what it took (compare-and-delete) and
  the same replies are the read the step decides on: held by live sessions of others on
  M -> Wait; a stale proposal -> one more round with 1 + the highest counter of the M
  replies. No read precedes the script: the ticket proposes 1 + the highest counter it
  saw (its enqueue, its last step, or the counter its wake carried). The script is the
  step's one linearizable read; it checks everything a separate read would.
* read with the win (``Ticket.read_on_win``, docs/design.md): a winning ACQUIRE also
  ``HMGET``s that ``data:`` key in the same script; Won carries the newest value among
  the instances taken (a majority, which meets the guarded write's).
* fencing token: the proposal is 1 + the highest ``counter:<election>`` the ticket saw;
  the SAME script accepts only where counter < proposal and sets counter = proposal, so
  each instance accepts strictly rising tokens in acquisition order. Leaderships L1
  before L2 took majorities sharing an instance i, L1 first: had L2 taken i first, L1
  could take it only after L2's session died there, i.e. after L2's whole validity (the
  session key outlives the leader's deadline) -- but L2 leads after L1. So token(L2) >
  counter_i >= token(L1) across any leader change, while no majority loses its counters.
* loss: a leader key on an instance disappears only with its session key there. A ticket
  keeps the instances A it was won on; a renewal of the set R proves the key intact on
  R & A until send time + TTL, so the ticket is valid only while |R & A| >= M (else
  ``report_loss``). A win that raced a renewal is checked against it alike; a won ticket
  not yet held by the core that loses its majority fails the renewal (StoreUnavailable),
  so that renewal extends no deadline.
* proclaim, guarded writes: scripts checking per instance that the leader key holds our
  ticket and token and our session is alive; done on M, else NotLeader (StoreUnavailable
  if too few answered). ``data:<key>`` carries (token, seq); ``read`` returns the value
  of the highest (token, seq) a majority answered. ``leader()`` needs M instances
  agreeing on it, its session alive there.
* order (FIFO): ``enqueue`` is ONE script per instance that takes the next
  ``qseq:<election>`` there and files the ticket under it in ``queue:<election>`` and
  ``contenders:<election>`` (where its session is alive); its order is the highest value
  of the M answers (a second round sets it where they differ). A later enqueue meets an
  instance both majorities share with qseq >= that order, so it queues behind. The
  same script then tries to take the key as the acquisition script would (with that
  instance's order, no force, the handoff marker read with it), so an uncontended
  campaign is ONE script per instance: with one instance it proposes 1 + the counter
  there; with several, 1 + the token this client last won in that election (one
  proposal must reach all; unknown: register only). The first ``try_lead`` hands that
  win out; one nobody stepped is given back by a renewal TTL / 3 later (the entry
  withdrawn, which wakes the one behind it). Not for
  tenure's own side elections (never stepped). A ticket
  competes only if M answering instances show no live entry ahead of it (the holder
  aside): while an earlier one is live on M, no later one can. Order only decides who
  TRIES -- acquisition is the majority script above, so it cannot make two leaders.
* signal: each client subscribes to its own ``wake:<client>``, read by the waiting
  campaign threads themselves (no listener thread, no hop from a message to the waiter
  it wakes: :class:`~tenure.adapters.redis_quorum.DirectReader`); ``withdraw`` (one script:
  compare-and-delete the leader key, remove the entry) publishes there for the next
  live entry behind the removed one and, if it released the key, the first live entry:
  O(1) messages per change, nobody else woken. The message carries the counter (the
  woken ticket's proposal - 1); a waiter steps once wakes came from M instances (the
  first instance's can arrive before the others ran the withdrawal), or 20 ms after the
  first (an instance may have had no entry to wake). ``observe_step``
  uses ``changed:*`` (acquire, release, proclaim), subscribed only by clients that
  observe. Both signals are armed before the read and fire on a (re)subscription.
  Expiry is silent and messages can be lost, so ``retry_at`` is, first in line, the
  holder's PTTL or min(TTL / 2, 1 s) (the polling fallback; TTL / 4 for observers);
  behind, the PTTL of the
  live entry ahead (<= TTL): a dead or paused one is passed over within TTL + one read.
  A split vote retries after a random 5-50 ms. A ticket that saw the key free with an unchanged
  counter for a whole TTL competes anyway (those ahead are not stepping). Entries an
  enqueue's clean-up or a withdrawal left on some instance are removed after renewals.
* contenders: a majority's queues; entries seen live on at least answers - (N - M).

Clock reasoning: a renewal sent at t (local monotonic clock) arrives later, and PEXPIRE
sets expiry >= arrival + TTL >= t + TTL, so ``open_session`` returns TTL and the core's
deadline t + TTL x (1 - drift) holds on the renewed majority. Redis expires keys by the
INSTANCE's wall clock: ``drift`` covers a clock-rate difference, NOT a wall-clock step on
a Redis host (slew NTP, never step). A ``retry_at`` from a PTTL only schedules a re-read.

Persistence: tokens need a majority's counters to survive: ``appendonly yes`` and
``appendfsync always`` on each instance (or lose at most a minority's data at once, and
restart a wiped instance only after a TTL). An instance restarted WITHOUT its data lowers
its counter: one of three is outvoted, but if a majority (or the only instance) loses its
data, the next token can be LOWER than an earlier one. Use ``maxmemory-policy noeviction``.

Limits: N odd; N = 1 works but is not partition-safe (``StoreLimits``). No Redis Cluster
or replica failover (a replica may lose acknowledged counters): independent primaries.
TTL 0.5 s to 1 day, in milliseconds. FIFO holds while each waiter stays live on the
instances it registered on: one left live on N - M or fewer (its session expired on the
others: restarted empty, or cut off for over a TTL) may be overtaken. A client cut off
from a majority loses its session within TTL and the waiters behind it move up. The
queue's keys are new: upgrade all clients of an election together (or a new prefix).
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenure.adapters import redis_quorum as quorum
from tenure.adapters import redis_scripts as lua
from tenure.config import MAX_DRIFT, BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable
from tenure.handoff import marker_key
from tenure.options import Options
from tenure.store import (
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

CHANGES, WAKE = "changes", "wake"  # the quorum's feeds: observers, waiters
SIDE_ELECTIONS = (".tenure-", "_tenure_")
"""Name prefixes of tenure's own side elections (priority, handoff, migration): their
entries are never stepped, so their enqueue never takes the leader key."""
TOKEN_CACHE = 4096
OPTIONS = {"prefix": "key prefix (default tenure:)", **quorum.OPTIONS}
DEFAULT_PREFIX = "tenure:"
SINGLE_INSTANCE_WARNING = (
    "a single Redis instance is not partition-safe: a failover or a restart without "
    "its data can produce two leaders or lower a fencing token; use 3 or more "
    "independent instances (redis://h1:p,h2:p,h3:p)"
)


@dataclass(eq=False)
class RedisTicket(Ticket):
    """A registered candidate; ``key`` is its random ticket id, ``order`` its place in
    the queue, ``vacant`` the counter and time at which it first saw the leader key
    free while not first in line, ``counter`` the highest counter it saw. Once it
    leads: ``token``, the instances ``acquired`` it was won on, the version ``vseq`` of
    its proclaimed value, and ``majority_lost`` once a renewal covered fewer than a
    majority of ``acquired`` (the leadership is void)."""

    sid: str = ""
    value: bytes = b""
    token: int = 0
    vseq: int = 0
    acquired: frozenset[int] = frozenset()
    majority_lost: bool = False
    vacant: tuple[int, float] | None = None
    counter: int | None = None
    """The highest fencing-token counter this ticket saw (enqueue, each step): its next
    step proposes counter + 1 in the acquisition script itself, with no read before."""
    early: tuple[Won, str, float] | None = None
    """A win taken by the enqueue script itself, the guarded-write key it read with it
    and when it was sent: handed out by the first :meth:`RedisStore.try_lead`, with no
    round trip; given back by a renewal a third of a TTL later if nobody stepped (its
    entry withdrawn: the next in line is woken)."""
    revoked: bool = False
    """That win was given back: the ticket's next step says it died (the core queues a
    new one), so it never races the release with a take of its own."""


def _int(x: Any) -> Any:
    """A script's integer reply as int; anything else (bytes, nil) as it came."""
    return int(x) if isinstance(x, int) else x


def _newest(replies: list[Any]) -> bytes | None:
    """The value of a guarded-write key from each instance's ``[value, token, seq]``
    (nil where absent): the one written under the highest (token, seq), as :meth:`read`
    and the winning ACQUIRE (which reads it in the script that takes the key) see it."""
    best: tuple[int, int, bytes] | None = None
    for value, token, seq in replies:
        if value is not None:
            found = (int(token), int(seq), bytes(value))
            best = found if best is None or found[:2] > best[:2] else best
    return None if best is None else best[2]


class RedisStore(Store[RedisTicket]):
    """The contract over N independent Redis instances (see the module docstring)."""

    def __init__(self, settings: quorum.Settings, *, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self.prefix = prefix
        self._client_id = uuid.uuid4().hex  # names this client's wake channel
        self._quorum = quorum.Quorum(settings, prepare=lua.Scripts.on, feeds={
            CHANGES: quorum.Feed(self._key("changed", "*"), pattern=True),
            WAKE: quorum.Feed(self._key("wake", self._client_id), direct=True),
        })
        self.n = self._quorum.n
        self.limits = StoreLimits(
            min_ttl=0.5, max_ttl=86400.0, arrival_order=True,
            partition_safe=self.n >= 3,
            warning="" if self.n >= 3 else SINGLE_INSTANCE_WARNING,
        )
        self._lock = threading.Lock()
        self._ttl, self._ttl_ms = 0.0, 0
        self._sid = ""
        self._renewed_at = 0.0
        self._registered: set[RedisTicket] = set()
        self._holding: set[RedisTicket] = set()
        """Tickets whose leader keys we took (from the win on, before the core marks them
        won, until withdrawn or reported lost)."""
        self._leftovers: dict[RedisTicket, set[int]] = {}
        """Entries to remove again, and the instances that did not confirm it."""
        self._sweeper: threading.Thread | None = None
        self._renewals: deque[tuple[float, frozenset[int]]] = deque(maxlen=64)
        """The latest renewals that missed an instance (send time, instances renewed):
        the only ones that can leave a win short of its majority (:meth:`_won`)."""
        self._seq = itertools.count(1)
        self._voided: set[RedisTicket] = set()
        """Held tickets a renewal left short of their majority (``majority_lost``)."""
        self._early: set[RedisTicket] = set()
        """Tickets whose enqueue took the key, not yet handed out by a step."""
        self._tokens: dict[str, int] = {}
        """The last token this client won per election (a bounded cache): with several
        instances, an enqueue proposes 1 + it (one proposal must go to all)."""

    # -- configuration ------------------------------------------------------------

    @classmethod
    def from_url(cls, url: BackendURL) -> RedisStore:
        opts = Options("redis", url, OPTIONS)
        settings = quorum.Settings.from_url(url, opts)
        prefix = opts.text("prefix", DEFAULT_PREFIX)
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ConfigError(f"option prefix {prefix!r} must be non-empty, without spaces")
        return cls(settings, prefix=prefix)

    @property
    def description(self) -> str:
        return self._quorum.settings.description

    @property
    def majority(self) -> int:
        """M, the answers every decision needs: the quorum's own (one value for both)."""
        return self._quorum.majority

    @majority.setter
    def majority(self, value: int) -> None:  # lowered by conformance.suite.broken only
        self._quorum.majority = value

    def _key(self, kind: str, name: str) -> str:
        """``<prefix><kind>:<name>``: session, leader, counter, contenders, queue, qseq,
        data; channels changed, wake."""
        return f"{self.prefix}{kind}:{name}"

    def _keys(self, election: str, *kinds: str) -> list[str]:
        return [self._key(kind, election) for kind in kinds]

    # -- session ----------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        with self._lock:
            self._ttl, self._ttl_ms = ttl, math.ceil(ttl * 1000)
            # Requests must time out well within the renewal interval (TTL / 3).
            self._quorum.cap_timeout(ttl / 4)
        sid = uuid.uuid4().hex
        key = self._key("session", sid)
        t_sent = time.monotonic()
        results = self._quorum.fanout(lambda inst: inst.client.set(key, b"1", px=self._ttl_ms))
        created = [i for i, ok in self._quorum.answers(results, "opening a session") if ok]
        if len(created) < self.majority:
            raise StoreUnavailable(f"could not create a session on a majority of {self.n}")
        self._sid = sid
        self._renewed_at = t_sent
        return ttl

    def renew_session(self, held: frozenset[RedisTicket]) -> None:
        t_sent = time.monotonic()
        key, ttl_ms = self._key("session", self._sid), self._ttl_ms
        results = self._quorum.fanout(lambda inst: inst.client.pexpire(key, ttl_ms), renewal=True)
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
            self._quorum.answers(results, "renewing the session")
            raise StoreUnavailable(f"session renewed on {len(renewed)} of {self.n} instances")
        with self._lock:
            self._renewed_at = t_sent
            if len(renewed) < self.n:  # a full renewal covers every win's majority
                self._renewals.append((t_sent, renewed))
            # Only a renewal that missed an instance can leave a ticket short of its
            # majority: the common case costs nothing per election held.
            if len(renewed) < self.n:
                for ticket in self._holding:
                    if len(renewed & ticket.acquired) < self.majority:
                        ticket.majority_lost = True
                        self._voided.add(ticket)
            self._voided = {t for t in self._voided if t.majority_lost and t in self._holding}
            lost = {t for t in self._voided if t in held}
            # Won by an enqueue, but not stepped since (a stuck caller): give it back, as
            # an entry that does not step holds the line no longer than a TTL.
            unclaimed = {t for t in self._early if t.early is not None
                         and t.early[2] + self._ttl / 3 <= t_sent}
            self._early = {t for t in self._early if t.early is not None} - unclaimed
            for ticket in unclaimed:
                ticket.early, ticket.revoked = None, True
            self._holding -= unclaimed
            unadopted = any(t not in held for t in self._voided - unclaimed)
            self._holding -= lost
            if self._leftovers and (self._sweeper is None or not self._sweeper.is_alive()):
                self._sweeper = threading.Thread(target=self._sweep, daemon=True,
                                                 name="tenure-redis-sweep")
                self._sweeper.start()
        if unclaimed:
            # Withdrawn, not just released: the entry is dead (its next step re-queues
            # it), and the withdrawal wakes the entry behind it, whose turn it now is.
            threading.Thread(target=lambda: [self._forget(t) for t in unclaimed],
                             daemon=True, name="tenure-redis-release").start()
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
            tickets = self._registered | self._holding | set(self._leftovers)
            self._registered.clear()
            self._holding.clear()
            self._leftovers.clear()
        self._sid = ""
        calls = [self._withdraw_call(t) for t in tickets]

        def end(inst: quorum.Instance[lua.Scripts]) -> None:
            pipe = inst.client.pipeline(transaction=False)
            for keys, args in calls:  # wakes whoever is behind each entry
                inst.scripts.withdraw(keys, args, client=pipe)
            pipe.delete(key)
            pipe.execute()

        self._quorum.fanout(end)

    # -- candidates -------------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> RedisTicket:
        if not self._sid:
            raise SessionExpired("no Redis session is open")
        ticket = RedisTicket(election, candidate_id, uuid.uuid4().hex, sid=self._sid,
                             value=value)
        keys = self._keys(election, "contenders", "queue", "qseq", "counter", "leader")
        keys.insert(1, self._key("session", self._sid))
        args: list[Any] = [
            ticket.key, lua.entry(self._sid, self._client_id, candidate_id, value)]
        proposal = self._early_proposal(election)
        marker = ""
        if proposal is not None:
            # The same script also takes the key where nothing live is ahead and it is
            # free (the uncontended campaign's one round trip); its first try_lead hands
            # the win out. The handoff marker is read with it, as a step would.
            marker = marker_key(election)
            keys.append(self._key("data", marker))
            args += [self._sid, proposal, candidate_id, value, self._ttl_ms,
                     self._key("session", ""), self._key("changed", election)]
        t_sent = time.monotonic()
        results = [r if isinstance(r, StoreUnavailable) else [_int(x) for x in r]
                   for r in self._quorum.run_script(lambda scripts: scripts.register, keys,
                                                    args)]
        took = time.monotonic() - t_sent
        replies = [r for r in results if not isinstance(r, StoreUnavailable)]
        orders = [int(r[0]) for r in replies if r[0]]
        try:
            if len(orders) < self.majority:
                if sum(1 for r in replies if r[0] == 0) > self.n - self.majority:
                    raise SessionExpired(f"session {self._sid} is gone on a majority of {self.n}")
                self._quorum.answers(results, f"enqueueing in {election!r}")
                raise StoreUnavailable(f"enqueueing in {election!r}: registered on too few")
            ticket.order = max(orders)
            ticket.counter = max(int(r[1]) for r in replies)
            if min(orders) != ticket.order:  # concurrent enqueues, or a lagging instance
                again = (self._keys(election, "queue", "qseq"), [ticket.key, str(ticket.order)])
                self._quorum.answers(
                    self._quorum.fanout(lambda inst: inst.scripts.order(*again)),
                    f"ordering the entry in {election!r}")
            if proposal is not None:
                self._taken_at_enqueue(ticket, results, t_sent, took, marker)
        except BaseException:
            self._forget(ticket)  # leave no partial registration behind
            raise
        with self._lock:
            self._registered.add(ticket)
        return ticket

    def _early_proposal(self, election: str) -> int | None:
        """The proposal an enqueue takes the key with (0: the instance's counter + 1,
        right for a single instance only), or None: register only. Not for tenure's own
        side elections (priority, handoff, migration entries are never stepped)."""
        if election.startswith(SIDE_ELECTIONS) or not self._ttl_ms:
            return None
        if self.n == 1:
            return 0
        last = self._tokens.get(election)
        return None if last is None else last + 1

    def _taken_at_enqueue(self, ticket: RedisTicket, results: list[Any], t_sent: float,
                          took: float, marker: str) -> None:
        """Keeps the enqueue's take as the ticket's first step where it won (see
        :meth:`_won`); gives back a partial one."""
        takes = [r[2:] if not isinstance(r, StoreUnavailable) and len(r) > 2 else None
                 for r in results]
        acquired = frozenset(i for i, r in enumerate(takes) if r is not None and r[0] == 1)
        proposals = {int(r[1]) for r in takes if r is not None and r[0] == 1}
        if len(proposals) == 1:
            proposal = proposals.pop()
            won = self._won(ticket, proposal, acquired, t_sent, took, marker,
                            [r for i, r in enumerate(takes) if i in acquired])
            if won is not None:
                with self._lock:
                    ticket.early = (won, marker, t_sent)
                    self._early.add(ticket)
                return
            ticket.counter = max(ticket.counter or 0, proposal)
        if acquired:
            self._release(ticket)

    def _withdraw_call(self, ticket: RedisTicket) -> tuple[list[str], list[str]]:
        keys = self._keys(ticket.election, "leader", "contenders", "queue", "counter")
        args = [ticket.key, self._key("changed", ticket.election), self._key("wake", ""),
                self._key("session", ""), ticket.election]
        return keys, args

    def _forget(self, ticket: RedisTicket) -> int:
        """Gives the leader key back (compare-and-delete) and removes the entry on every
        instance that answers (the others again after later renewals); the answers."""
        keys, args = self._withdraw_call(ticket)
        results = self._quorum.run_script(lambda scripts: scripts.withdraw, keys, args)
        answered = {i for i, r in enumerate(results) if not isinstance(r, StoreUnavailable)}
        with self._lock:
            self._registered.discard(ticket)
            self._holding.discard(ticket)
            missing = self._leftovers.get(ticket, set(range(self.n))) - answered
            if missing:
                self._leftovers[ticket] = missing
            else:
                self._leftovers.pop(ticket, None)
        return len(answered)

    def _sweep(self) -> None:
        """Removes the left-over entries of the current session (off the renewal path)."""
        with self._lock:
            self._leftovers = {t: m for t, m in self._leftovers.items() if t.sid == self._sid}
            tickets = list(self._leftovers)
        for ticket in tickets:
            self._forget(ticket)

    def _states(self, election: str, sid: str, ticket: RedisTicket | None = None
                ) -> list[lua.State]:
        keys = self._keys(election, "leader", "counter", "queue", "contenders")
        keys.insert(2, self._key("session", sid))
        args = [self._key("session", ""), ticket.key if ticket else "",
                str(ticket.order if ticket else 0)]
        results = self._quorum.fanout(lambda inst: lua.State.parse(inst.scripts.state(keys, args)))
        return [s for _, s in self._quorum.answers(results, f"reading election {election!r}")]

    def try_lead(self, ticket: RedisTicket) -> Step:
        if ticket.sid != self._sid:
            raise SessionExpired(f"the session of {ticket.candidate_id} was replaced")
        with self._lock:
            early, ticket.early = ticket.early, None
            self._early.discard(ticket)
            kept = ticket in self._holding and not ticket.majority_lost
            if ticket.revoked:
                raise SessionExpired(f"{ticket.candidate_id} did not step for a third of a "
                                     "TTL after its enqueue took the key; it was given back")
        if early is not None:
            won, marker, _ = early
            if kept:  # won by the enqueue script, no renewal since lost its majority
                if ticket.read_on_win is None:
                    return Won(won.token)
                if ticket.read_on_win == marker:
                    return won
                # Another key than the one the script read: read it now. While we hold
                # the key nobody else's guarded write lands, so a majority's newest is
                # still what it was at the win.
                return Won(won.token, self.read(ticket.read_on_win), read_done=True)
            self._release(ticket)
            with self._lock:
                self._holding.discard(ticket)
        # Armed before the read; fired by the wakes of a majority (one instance's wake can
        # come before the others have run the withdrawal: stepping then would find the key
        # still held there), or by a (re)subscription.
        bell = self._quorum.signal(WAKE, ticket.election, needed=self.majority)
        if ticket.sid != self._sid:
            raise SessionExpired(f"the session of {ticket.candidate_id} was replaced")
        if ticket.counter is None:  # nothing known yet
            return self._decide(ticket, bell, self._states(ticket.election, ticket.sid, ticket))
        woken_with = self._quorum.note(WAKE, ticket.election)  # the counter a wake carried
        if woken_with is not None:
            ticket.counter = max(ticket.counter, woken_with)
        # One round trip: the acquisition script reads what STATE would and takes the key
        # only where this ticket may lead; if it cannot win, its replies are the read.
        return self._compete(ticket, bell, ticket.counter + 1, hinted=True)

    def _decide(self, ticket: RedisTicket, bell: Signal, states: list[lua.State]) -> Step:
        """The step from a majority's view of the election: wait, or compete."""
        if sum(1 for s in states if s.own_pttl == -2) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        ticket.counter = max(s.counter for s in states)
        behind = [s for s in states if s.behind]
        first = len(states) - len(behind) >= self.majority
        busy = [s for s in states if s.held and s.sid != ticket.sid]
        now = time.monotonic()
        if len(busy) > self.n - self.majority:
            ticket.vacant = None
            if first:  # next in line: woken by the holder's withdrawal, or its expiry
                # TTL / 2: the wake feed is read by the waiter itself, and a broken
                # subscription fires the bell, so only a silently dead connection loses
                # a wake (observers, on listener threads, keep TTL / 4).
                return self._wait(bell, lua.holder_expiry(busy), share=2)
            return self._behind(bell, behind, math.inf)
        if not first:
            if ticket.vacant is None or ticket.vacant[0] != ticket.counter:
                ticket.vacant = (ticket.counter, now)
            idle = ticket.vacant[1] + self._ttl - now
            if idle > 0:
                return self._behind(bell, behind, idle)
            # Free for a whole TTL and nobody took it: those ahead are not stepping.
        # The queue was judged above, on a majority: the script need not check it again.
        return self._compete(ticket, bell, ticket.counter + 1, hinted=False)

    def _forced(self, ticket: RedisTicket) -> bool:
        """The key was seen free, with this counter, for a whole TTL while not first."""
        return (ticket.vacant is not None and ticket.vacant[0] == ticket.counter
                and time.monotonic() >= ticket.vacant[1] + self._ttl)

    def _compete(self, ticket: RedisTicket, bell: Signal, proposal: int, *,
                 hinted: bool) -> Step:
        """The acquisition script on every instance with ``proposal``; ``hinted``: no
        read came before it, so the script also checks the queue, and if it does not win,
        its replies decide the step as a read would (:meth:`_decide`)."""
        keys = [*self._keys(ticket.election, "leader", "counter"),
                self._key("session", ticket.sid),
                *self._keys(ticket.election, "queue", "contenders")]
        if ticket.read_on_win is not None:
            keys.append(self._key("data", ticket.read_on_win))
        force = not hinted or self._forced(ticket)
        args: list[Any] = [ticket.sid, ticket.key, proposal, ticket.candidate_id, ticket.value,
                           0, self._ttl_ms, self._key("session", ""),
                           self._key("changed", ticket.election), ticket.order,
                           "1" if force else "0"]
        t_sent = time.monotonic()
        results = self._quorum.run_script(lambda scripts: scripts.acquire, keys, args)
        took = time.monotonic() - t_sent
        codes = [int(r[0]) if not isinstance(r, StoreUnavailable) else None for r in results]
        acquired = frozenset(i for i, code in enumerate(codes) if code == 1)
        won = self._won(ticket, proposal, acquired, t_sent, took, ticket.read_on_win,
                        [r for i, r in enumerate(results) if i in acquired])
        if won is not None:
            return won
        if acquired:
            self._release(ticket)
        if codes.count(-1) > self.n - self.majority:
            raise SessionExpired(f"the session of {ticket.candidate_id} expired")
        if hinted:
            # The replies are a majority's read (raises if too few); where we took the key
            # and gave it back, it is free now with counter = proposal.
            replies = self._quorum.answers(results, f"reading election {ticket.election!r}")
            return self._decide(ticket, bell, [
                lua.State(proposal, int(r[2]), int(r[3])) if int(r[0]) == 1
                else lua.State.parse(r[1:]) for _, r in replies])
        ticket.counter = max([proposal - 1] + [int(r[1]) for r in results
                                               if not isinstance(r, StoreUnavailable)])
        if 2 in codes or len(acquired) >= self.majority:
            # A counter moved on, or we were too slow or raced a renewal: again at once.
            return Wait(bell, retry_at=time.monotonic())
        # A split vote: retry after a random pause, not on a bell.
        return Wait(NoSignal(), retry_at=time.monotonic() + random.uniform(0.005, 0.05))

    def _won(self, ticket: RedisTicket, proposal: int, acquired: frozenset[int],
             t_sent: float, took: float, read_key: str | None, took_it: list[Any]
             ) -> Won | None:
        """The Won of a take sent at ``t_sent`` that came back after ``took`` s with the
        key on the instances ``acquired`` (their replies ``took_it``), or None: fewer
        than a majority, too slow (TTL x (1 - drift)), or a renewal sent since then
        covered fewer than a majority of them."""
        if len(acquired) < self.majority or took >= self._ttl * (1 - MAX_DRIFT):
            return None
        with self._lock:
            if any(t >= t_sent and len(renewed & acquired) < self.majority
                   for t, renewed in self._renewals):
                return None
            ticket.token, ticket.vseq, ticket.acquired = proposal, 0, acquired
            ticket.majority_lost, ticket.vacant = False, None
            ticket.counter = proposal
            self._holding.add(ticket)
            self._tokens.pop(ticket.election, None)
            self._tokens[ticket.election] = proposal
            if len(self._tokens) > TOKEN_CACHE:
                del self._tokens[next(iter(self._tokens))]
        if read_key is None:
            return Won(proposal)
        # The marker read in each winning script, atomically with the take: a guarded
        # write lands only where its writer holds the key with a live session, so on
        # every instance where we took it that write (if it was there) came first; it
        # reached a majority, which meets the majority we took -- as with :meth:`read`,
        # a majority's newest.
        return Won(proposal, _newest([r[4:7] for r in took_it]), read_done=True)

    def _wait(self, bell: Signal, expires_in: float, share: float = 4) -> Wait:
        """Wait on the bell, re-stepping when a holder's session may have expired or
        after the polling fallback (a message can be lost) of min(TTL / ``share``, 1 s),
        whichever is first."""
        poll = min(self._ttl / share, 1.0) if self._ttl else 1.0
        return Wait(bell, retry_at=time.monotonic() + min(expires_in, poll))

    def _behind(self, bell: Signal, behind: list[lua.State], limit: float) -> Wait:
        """Wait on the bell (the withdrawal of the entry ahead), re-stepping when the
        session of a live entry ahead may have expired (within TTL) or after ``limit``."""
        ahead = lua.expiry([s.ahead_pttl for s in behind])
        return Wait(bell, retry_at=time.monotonic() + min(ahead, limit, self._ttl or 1.0))

    def _release(self, ticket: RedisTicket) -> int:
        keys = [self._key("leader", ticket.election)]
        args = [ticket.key, self._key("changed", ticket.election)]
        results = self._quorum.fanout(lambda inst: inst.scripts.release(keys, args))
        return sum(1 for r in results if not isinstance(r, StoreUnavailable))

    def withdraw(self, ticket: RedisTicket) -> None:
        if self._forget(ticket) < self.majority:
            raise StoreUnavailable(
                f"withdrawing from {ticket.election!r} reached fewer than {self.majority} "
                "Redis instances; the rest free up when the session expires"
            )

    # -- leader operations ------------------------------------------------------------

    def _leader_write(self, ticket: RedisTicket, action: str,
                      call: Callable[[quorum.Instance[lua.Scripts]], Any]) -> None:
        results = self._quorum.fanout(call)
        done = sum(1 for r in results if r == 1)
        refused = sum(1 for r in results if r == 0)
        if done >= self.majority:
            return
        if refused > self.n - self.majority:
            raise NotLeader(
                f"{action} refused by the store: {ticket.candidate_id} does not lead "
                f"election {ticket.election!r} on a majority of {self.n} Redis instances"
            )
        self._quorum.answers(results, action)
        raise StoreUnavailable(f"{action} in {ticket.election!r}: no majority either way")

    def proclaim(self, ticket: RedisTicket, value: bytes) -> None:
        vseq = ticket.vseq + 1
        keys = [self._key("leader", ticket.election), self._key("session", ticket.sid)]
        args: list[Any] = [ticket.key, ticket.token, value, vseq,
                           self._key("changed", ticket.election)]
        self._leader_write(ticket, "proclaim", lambda inst: inst.scripts.proclaim(keys, args))
        ticket.vseq = vseq

    def guarded_write(self, ticket: RedisTicket, key: str, value: bytes) -> None:
        keys = [self._key("leader", ticket.election), self._key("session", ticket.sid),
                self._key("data", key)]
        args: list[Any] = [ticket.key, ticket.token, value, next(self._seq)]
        self._leader_write(ticket, "guarded write",
                           lambda inst: inst.scripts.guarded_write(keys, args))

    def read(self, key: str) -> bytes | None:
        name = self._key("data", key)
        results = self._quorum.fanout(
            lambda inst: list[Any](inst.client.hmget(name, "value", "token", "seq")))
        return _newest([r for _, r in self._quorum.answers(results, f"reading {key!r}")])

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
        bell = self._quorum.signal(CHANGES, election)  # armed before the read
        current, expires_in = self._current(election)
        return current, self._wait(bell, expires_in)

    def contenders(self, election: str) -> list[Contender]:
        keys, args = self._keys(election, "queue", "contenders"), [self._key("session", "")]
        results = self._quorum.fanout(lambda inst: list[Any](inst.scripts.contenders(keys, args)))
        answers = self._quorum.answers(results, f"listing the contenders of {election!r}")
        seen: dict[bytes, tuple[int, int, bytes]] = {}
        for _, reply in answers:
            for field, score, entry in zip(reply[::3], reply[1::3], reply[2::3], strict=True):
                count, order, _ = seen.get(bytes(field), (0, 0, b""))
                seen[bytes(field)] = (count + 1, max(order, int(float(score))), bytes(entry))
        needed = max(1, len(answers) - (self.n - self.majority))
        found = sorted((order, field, entry) for field, (count, order, entry) in seen.items()
                       if count >= needed)
        return [Contender(*lua.parse_entry(entry), order) for order, _, entry in found]

    def close(self) -> None:
        self._quorum.close()
