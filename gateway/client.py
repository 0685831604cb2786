"""The election contract, identical on every backend.

    import tenure
    client = tenure.connect("sqlite:///tmp/demo.db", ttl=5)
    with client.election("jobs/nightly").campaign(value=b"10.0.0.7") as lead:
        lead.ensure()            # raises LeadershipLost once the deadline has passed
        do_work(fencing_token=lead.token)

A :class:`Client` holds ONE store session (renewed by :mod:`tenure.session`) shared by
every election it campaigns in. :meth:`Election.campaign` blocks until this candidate
leads and returns a :class:`Leadership`, valid until its monotonic ``deadline``, which
each successful renewal moves to ``t_sent + ttl * (1 - drift)``. Loss (deadline passed,
session ended, entry gone) fires ``on_lost`` callbacks once, and from then on
``ensure()``, ``proclaim()`` and ``guarded_write()`` raise. What tenure does NOT do:
it cannot stop code that ignores ``ensure()``/``on_lost``; pass ``lead.token`` to the
resources you change and check it there (:mod:`tenure.fencing`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from tenure import events
from tenure.config import Settings, load_settings
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    LeadershipLost,
    NotLeader,
    SessionExpired,
    StoreUnavailable,
    TenureError,
    UsageError,
)
from tenure.names import (
    check_election_name,
    check_value,
    default_candidate_id,
)
from tenure.session import SessionKeeper
from tenure.store import Contender, LeaderInfo, Store, StoreLimits, Ticket

log = logging.getLogger("tenure")

LostCallback = Callable[["Leadership", str], None]
RETRY_FIRST = 0.05
RETRY_MAX = 1.0
"""Back-off bounds (seconds) of a campaign retrying an unavailable store."""


def _until(deadline: float | None, pause: float) -> float:
    """``pause``, shortened so a wait never outlasts ``deadline``."""
    return pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))


def connect(
    url: str | None = None,
    *,
    ttl: float | None = None,
    drift: float | None = None,
    candidate_id: str | None = None,
    config_file: str | None = None,
) -> Client:
    """Connects to the backend named by ``url`` (else ``TENURE_BACKEND``, else
    ``tenure.toml``, else the embedded SQLite default). Raises ConfigError for bad
    configuration (before anything is written) and StoreUnavailable if the store cannot
    be reached. The session is created at the first campaign."""
    from tenure.adapters import open_store

    settings = load_settings(
        url, ttl=ttl, drift=drift, candidate_id=candidate_id, config_file=config_file
    )
    store = open_store(settings.url)
    try:
        check_ttl(settings.ttl, store.limits, store.description)
    except ConfigError:
        store.close()
        raise
    if not store.limits.partition_safe and store.limits.warning:
        log.warning("%s: %s", store.description, store.limits.warning)
    return Client(store, settings)


def check_ttl(ttl: float, limits: StoreLimits, backend: str) -> None:
    """Raises ConfigError unless ``ttl`` is one the backend honours exactly."""
    if not limits.min_ttl <= ttl <= limits.max_ttl:
        raise ConfigError(
            f"TTL {ttl:g} s is outside what {backend} allows ({limits.min_ttl:g} to "
            f"{limits.max_ttl:g} s); choose a TTL in that range"
        )
    step = limits.ttl_step
    if step and abs(ttl / step - round(ttl / step)) > 1e-9:
        raise ConfigError(
            f"TTL {ttl:g} s is not a multiple of {step:g} s, which {backend} requires; "
            f"use e.g. {max(limits.min_ttl, round(ttl / step) * step):g}"
        )


class Client:
    """A connection to one store with one session, shared by all its elections.

    Use as a context manager, or call :meth:`close`, to end the session at once
    (every leadership is released; others can lead promptly)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.candidate_id = settings.candidate_id or default_candidate_id()
        self.keeper = SessionKeeper(store, settings.ttl, settings.drift, self._lost)
        self._lock = threading.Lock()
        self._active: dict[str, Leadership | None] = {}
        self._by_ticket: dict[Ticket, Leadership] = {}
        self._withdrawals: list[threading.Thread] = []
        store.set_loss_reporter(self._lost_from_store)

    @property
    def ttl(self) -> float:
        """The session TTL in seconds."""
        return self.settings.ttl

    @property
    def backend(self) -> str:
        """The backend URL without secrets."""
        return self.store.description

    def election(self, name: str) -> Election:
        """The election called ``name`` (validated: InvalidNameError if bad)."""
        return Election(self, check_election_name(name))

    def read(self, key: str) -> bytes | None:
        """Reads a key written with :meth:`Leadership.guarded_write`."""
        return self.store.read(check_election_name(key))

    def close(self) -> None:
        """Resigns everything and ends the session. Idempotent."""
        with self._lock:
            leaderships = list(self._by_ticket.values())
        for leadership in leaderships:
            leadership._mark_released("the client was closed")
        self.keeper.close()
        with self._lock:
            pending, self._withdrawals = self._withdrawals, []
        for thread in pending:
            thread.join(timeout=self.ttl)
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reserve(self, name: str) -> None:
        with self._lock:
            if name in self._active:
                raise UsageError(
                    f"this client already campaigns or leads in election {name!r}; resign "
                    "first, or use another client (connect()) for a second candidate"
                )
            self._active[name] = None

    def _unreserve(self, name: str) -> None:
        with self._lock:
            self._active.pop(name, None)

    def _held(self, leadership: Leadership) -> None:
        with self._lock:
            self._active[leadership.election] = leadership
            self._by_ticket[leadership._ticket] = leadership

    def _forget(self, leadership: Leadership) -> None:
        with self._lock:
            if self._active.get(leadership.election) is leadership:
                del self._active[leadership.election]
            self._by_ticket.pop(leadership._ticket, None)
        self.keeper.release(leadership._ticket)

    def _leadership_of(self, name: str) -> Leadership | None:
        with self._lock:
            return self._active.get(name)

    def _lost(self, ticket: Ticket, reason: str) -> None:
        with self._lock:
            leadership = self._by_ticket.get(ticket)
        if leadership is not None:
            leadership._mark_lost(reason)

    def _withdraw_in_background(self, ticket: Ticket) -> None:
        """Gives a lost entry back without blocking the caller (a watchdog or adapter
        thread); :meth:`close` waits for these before closing the store."""
        thread = threading.Thread(
            target=_withdraw_quietly, args=(self.store, ticket), name="tenure-withdraw",
            daemon=True,
        )
        with self._lock:
            self._withdrawals = [t for t in self._withdrawals if t.is_alive()]
            self._withdrawals.append(thread)
        thread.start()

    def _lost_from_store(self, ticket: Ticket, reason: str) -> None:
        self.keeper.release(ticket)
        self._lost(ticket, reason)


class Election:
    """One named election seen through a client: campaign, leader, observe, resign."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def campaign(
        self,
        value: bytes | str = b"",
        *,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        on_lost: LostCallback | None = None,
    ) -> Leadership:
        """Blocks until this client's candidate leads and returns the Leadership.

        Candidates are served in arrival order where the store has one. Raises
        CampaignTimeout after ``timeout`` seconds, CampaignCancelled once ``cancel`` is
        set, UsageError if this client already campaigns here. On any of these the
        queue entry is removed. ``on_lost(leadership, reason)`` is called once if the
        leadership is later lost (not on resign)."""
        client = self.client
        data = check_value(value, client.settings.max_value_bytes)
        if timeout is not None and not timeout >= 0:
            raise ConfigError(f"campaign timeout {timeout!r} must be >= 0 seconds, or None")
        deadline = None if timeout is None else time.monotonic() + timeout
        cancelled = cancel or threading.Event()
        client._reserve(self.name)
        started = time.monotonic()
        try:
            leadership = self._win(data, deadline, cancelled, timeout)
        except BaseException:
            client._unreserve(self.name)
            raise
        if on_lost is not None:
            leadership.on_lost(on_lost)
        client._held(leadership)
        if leadership.lost:
            client._forget(leadership)
        log.info(
            "leadership won: election=%s candidate=%s token=%d",
            self.name, client.candidate_id, leadership.token,
        )
        events.publish("campaign_won", election=self.name, candidate_id=client.candidate_id,
                       token=leadership.token, waited=time.monotonic() - started)
        return leadership

    def _win(
        self, data: bytes, deadline: float | None, cancelled: threading.Event,
        timeout: float | None,
    ) -> Leadership:
        client = self.client
        store = client.store
        backoff = RETRY_FIRST
        last_error: StoreUnavailable | None = None
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in election {self.name!r} was cancelled")
            # The first attempt is always made (timeout=0 means "try once, don't wait").
            if last_error is not None and deadline is not None and time.monotonic() >= deadline:
                raise self._timed_out(timeout, last_error)
            generation = 0
            try:
                generation = client.keeper.ensure_open()
                ticket = store.enqueue(self.name, client.candidate_id, data)
            except StoreUnavailable as exc:
                # The store is unreachable (or our session just ended): a campaign keeps
                # trying until its timeout or cancel, like a waiting candidate would.
                if isinstance(exc, SessionExpired):
                    client.keeper.expired(generation, str(exc))
                last_error = exc
                log.warning("campaign in %s: %s (retrying)", self.name, exc)
                cancelled.wait(_until(deadline, backoff))
                backoff = min(RETRY_MAX, backoff * 2)
                continue
            try:
                token = store.await_turn(ticket, deadline, cancelled)
            except SessionExpired as exc:
                # The entry died (with its session, or removed by an operator): queue
                # again. Only a refused enqueue proves the session itself is gone.
                _withdraw_quietly(store, ticket)
                last_error = exc
                continue
            except CampaignTimeout:
                _withdraw_quietly(store, ticket)
                raise self._timed_out(timeout, last_error) from None
            except StoreUnavailable as exc:
                _withdraw_quietly(store, ticket)
                last_error = exc
                log.warning("campaign in %s: %s (retrying)", self.name, exc)
                cancelled.wait(_until(deadline, backoff))
                backoff = min(RETRY_MAX, backoff * 2)
                continue
            except BaseException:
                _withdraw_quietly(store, ticket)
                raise
            backoff = RETRY_FIRST
            leadership = Leadership(client, ticket, data, token)
            valid_until = client.keeper.adopt(ticket, generation)
            if valid_until is not None:
                leadership._valid_until_hint = valid_until
                return leadership
            # Won on a session that is past its deadline: this leadership may already
            # be void in the store. Give the entry back and queue again.
            _withdraw_quietly(store, ticket)
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in election {self.name!r} was cancelled")

    def _timed_out(
        self, timeout: float | None, last_error: StoreUnavailable | None
    ) -> CampaignTimeout:
        store_note = f"; last store error: {last_error}" if last_error else ""
        return CampaignTimeout(
            f"campaign in election {self.name!r} did not win within {timeout:g} s "
            f"(leader: {_describe(self.leader_or_none())}{store_note}); retry or raise the "
            "timeout"
        )

    def leader(self) -> LeaderInfo | None:
        """The current leader (id, value, token) by a linearizable read, or None."""
        return self.client.store.leader(self.name)

    def contenders(self) -> list[Contender]:
        """Every live candidate here -- the leader and each waiter -- as the store lists
        them (in arrival order where it has one), like kazoo's ``Election.contenders()``."""
        return self.client.store.contenders(self.name)

    def leader_or_none(self) -> LeaderInfo | None:
        """Like :meth:`leader`, but None when the store cannot be asked."""
        try:
            return self.leader()
        except TenureError:
            return None

    def resign(self) -> None:
        """Resigns this client's leadership here, if any; otherwise does nothing."""
        leadership = self.client._leadership_of(self.name)
        if leadership is not None:
            leadership.resign()

    def observe(
        self,
        *,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[LeaderInfo | None]:
        """Yields the current leader (or None), then each change, in token order.

        Runs until ``stop`` is set or ``timeout`` seconds pass. Store outages are
        retried; after one the state is re-read, so the latest state is never missed
        (intermediate leaders that came and went during an outage may be)."""
        stop = stop or threading.Event()
        end = None if timeout is None else time.monotonic() + timeout
        store = self.client.store
        known: LeaderInfo | None = None
        first = True
        backoff = 0.05
        while not stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                return
            slice_end = now + 1.0 if end is None else min(end, now + 1.0)
            try:
                current = store.leader(self.name) if first else store.await_change(
                    self.name, known, slice_end
                )
                backoff = 0.05
            except StoreUnavailable as exc:
                log.warning("observe %s: store unavailable (retrying): %s", self.name, exc)
                stop.wait(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            if first or current != known:
                if current is not None and known is not None and current.token < known.token:
                    continue
                first = False
                known = current
                yield current

    def on_change(self, callback: Callable[[LeaderInfo | None], None]) -> Observer:
        """Calls ``callback`` with the current leader and each change, from a thread,
        until the returned Observer is stopped."""
        return Observer(self, callback)


class Observer:
    """A background thread feeding :meth:`Election.observe` to a callback."""

    def __init__(self, election: Election, callback: Callable[[LeaderInfo | None], None]):
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(election, callback), name="tenure-observer", daemon=True
        )
        self._thread.start()

    def _run(self, election: Election, callback: Callable[[LeaderInfo | None], None]) -> None:
        for state in election.observe(stop=self._stop):
            try:
                callback(state)
            except Exception:
                log.exception("observer callback failed")

    def stop(self) -> None:
        """Stops observing; returns when the thread has ended."""
        self._stop.set()
        self._thread.join()


class Leadership:
    """A won campaign: election, candidate id, value, fencing token, deadline.

    Valid until :attr:`deadline` (monotonic) unless lost earlier; check with
    :meth:`ensure` before acting and pass :attr:`token` to what you change. As a
    context manager it resigns on exit. Callbacks from :meth:`on_lost` run in a tenure
    thread: keep them short (set a flag, signal a worker)."""

    def __init__(self, client: Client, ticket: Ticket, value: bytes, token: int) -> None:
        self._client = client
        self._ticket = ticket
        self.election = ticket.election
        self.candidate_id = ticket.candidate_id
        self.value = value
        self.token = token
        self._lock = threading.Lock()
        self._lost_event = threading.Event()
        self._reason = ""
        self._released = False
        self._callbacks: list[LostCallback] = []
        self._valid_until_hint = 0.0
        self.elected_at = time.monotonic()
        self.lost_at: float | None = None

    def __repr__(self) -> str:
        state = f"lost: {self._reason}" if self.lost else f"valid for {self.remaining():.2f} s"
        return f"<Leadership {self.election!r} token={self.token} {state}>"

    @property
    def ticket(self) -> Ticket:
        """The store entry behind this leadership (for adapters and the conformance
        suite, which writes through the store directly to prove its guards)."""
        return self._ticket

    @property
    def deadline(self) -> float:
        """Monotonic time (``time.monotonic()``) after which this leadership is void."""
        if self._lost_event.is_set():
            return self.lost_at or self.elected_at
        return self._client.keeper.valid_until

    def remaining(self) -> float:
        """Seconds of validity left (0 once lost)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def lost(self) -> bool:
        """True once lost or resigned."""
        if not self._lost_event.is_set() and time.monotonic() >= self.deadline:
            self._mark_lost(self._client.keeper._deadline_reason())
        return self._lost_event.is_set()

    @property
    def lost_reason(self) -> str:
        """Why leadership ended ("" while valid)."""
        return self._reason

    def ensure(self) -> None:
        """Returns if still valid; raises LeadershipLost (with the reason) otherwise."""
        if self.lost:
            raise LeadershipLost(
                f"leadership of election {self.election!r} (token {self.token}) is lost: "
                f"{self._reason}"
            )

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Blocks until lost or resigned (True) or until ``timeout`` passes (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = self.deadline - time.monotonic()
            if end is not None:
                remaining = min(remaining, end - time.monotonic())
            if self._lost_event.wait(max(0.0, min(remaining, 1.0))):
                return True
            if self.lost:
                return True
            if end is not None and time.monotonic() >= end:
                return False

    def on_lost(self, callback: LostCallback) -> None:
        """Registers ``callback(leadership, reason)``; called once on loss (at once if
        already lost). Not called on resign."""
        with self._lock:
            if not self._lost_event.is_set():
                self._callbacks.append(callback)
                return
            fire = not self._released
        if fire:
            _call(callback, self, self._reason)

    def resign(self) -> None:
        """Releases leadership at once so the next candidate leads promptly.
        A no-op if already resigned or lost."""
        self._mark_released("resigned")

    def proclaim(self, value: bytes | str) -> None:
        """Changes this leader's value without giving up leadership."""
        data = check_value(value, self._client.settings.max_value_bytes)
        self._require_valid("proclaim")
        self._client.store.proclaim(self._ticket, data)
        self.value = data

    def guarded_write(self, key: str, value: bytes | str) -> None:
        """Writes ``value`` under ``key`` in the store, committed only if this candidate
        still leads (one store transaction). Raises NotLeader otherwise."""
        key = check_election_name(key)
        data = check_value(value, self._client.settings.max_value_bytes)
        self._require_valid("guarded write")
        self._client.store.guarded_write(self._ticket, key, data)

    def _require_valid(self, action: str) -> None:
        if self.lost:
            raise NotLeader(
                f"{action} refused: leadership of election {self.election!r} (token "
                f"{self.token}) is lost: {self._reason}"
            )

    def __enter__(self) -> Leadership:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.resign()

    def _end(self, reason: str, released: bool) -> bool:
        with self._lock:
            if self._lost_event.is_set():
                return False
            self._reason = reason
            self._released = released
            self.lost_at = time.monotonic()
            self._lost_event.set()
        self._client._forget(self)
        return True

    def _mark_released(self, reason: str) -> None:
        if self._end(reason, released=True):
            _withdraw_quietly(self._client.store, self._ticket)
            events.publish("leadership_released", election=self.election,
                           candidate_id=self.candidate_id, token=self.token, reason=reason)
            log.info("leadership released: election=%s token=%d (%s)",
                     self.election, self.token, reason)

    def _mark_lost(self, reason: str) -> None:
        if not self._end(reason, released=False):
            return
        log.warning("leadership lost: election=%s token=%d: %s", self.election, self.token, reason)
        late = max(0.0, (self.lost_at or 0.0) - self._client.keeper.valid_until)
        events.publish("leadership_lost", election=self.election, candidate_id=self.candidate_id,
                       token=self.token, reason=reason, late=late)
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            _call(callback, self, reason)
        # The entry may still exist (e.g. we were paused but the store kept it): give it
        # back so the next candidate does not wait for the session to expire.
        self._client._withdraw_in_background(self._ticket)


def _call(callback: LostCallback, leadership: Leadership, reason: str) -> None:
    try:
        callback(leadership, reason)
    except Exception:
        log.exception("on_lost callback failed")


def _withdraw_quietly(store: Store, ticket: Ticket) -> None:
    try:
        store.withdraw(ticket)
    except TenureError as exc:
        log.warning("could not withdraw %s from %s (it expires with the session): %s",
                    ticket.key, store.description, exc)


def _describe(info: LeaderInfo | None) -> str:
    return "none" if info is None else f"{info.candidate_id} token {info.token}"
