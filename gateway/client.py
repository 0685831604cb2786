"""The election contract, identical on every backend.

    import tenure
    client = tenure.connect("sqlite:///tmp/demo.db", ttl=5)
    with client.election("jobs/nightly").campaign(value=b"10.0.0.7") as lead:
        lead.ensure()            # raises LeadershipLost once the deadline has passed
        do_work(fencing_token=lead.token)

A :class:`Client` holds ONE store session (renewed by :mod:`tenure.session`) shared by
every election it campaigns in. :meth:`Election.campaign` runs the one campaign loop of
:mod:`tenure.campaign` and returns a :class:`~tenure.leadership.Leadership`, valid until
its monotonic ``deadline``. What tenure does NOT do: it cannot stop code that ignores
``ensure()``/``on_lost``; pass ``lead.token`` to the resources you change and check it
there (:mod:`tenure.fencing`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from tenure import events
from tenure.campaign import Campaign, observe, withdraw_quietly
from tenure.cancel import AnyOf, Flag
from tenure.config import Settings, load_settings
from tenure.errors import ConfigError, TenureError, UsageError
from tenure.handoff import HandoffGate
from tenure.leadership import Leadership, LostCallback, PreferredCallback, State
from tenure.names import check_election_name, check_value, default_candidate_id
from tenure.priority import check_priority, with_priorities
from tenure.runloop import run as run_forever
from tenure.session import SessionKeeper
from tenure.store import Contender, LeaderInfo, Store, StoreLimits, Ticket

log = logging.getLogger("tenure")

__all__ = ["Client", "Election", "Leadership", "LostCallback", "Observer", "State", "connect"]


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

    def __init__(self, store: Store[Any], settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.candidate_id = settings.candidate_id or default_candidate_id()
        self.keeper = SessionKeeper(store, settings.ttl, settings.drift, self._lost)
        self._lock = threading.Lock()
        self._active: dict[str, Leadership | None] = {}
        self._by_ticket: dict[Ticket, Leadership] = {}
        self._early_losses: dict[Ticket, str] = {}
        self._withdrawals: list[threading.Thread] = []
        self._uses = 0
        self._closing = threading.Lock()
        self._closed_once = False
        self.closing = Flag()
        """Set when :meth:`close` begins: ends this client's campaigns and observers
        (a :class:`tenure.cancel.Flag`: it wakes their waits, nothing polls it)."""
        self.handoff_gate = HandoffGate()
        """Lets a won campaign step aside for a named successor (:mod:`tenure.handoff`)."""
        store.bind(self._lost_from_store)

    @property
    def ttl(self) -> float:
        """The session TTL in seconds."""
        return self.settings.ttl

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self.keeper.closed

    @property
    def backend(self) -> str:
        """The backend URL without secrets."""
        return self.store.description

    def election(self, name: str) -> Election:
        """The election called ``name`` (validated: InvalidNameError if bad)."""
        return Election(self, check_election_name(name))

    def read(self, key: str) -> bytes | None:
        """Reads a key written with :meth:`Leadership.guarded_write`."""
        return self.store.read(check_election_name(key, what="guarded-write key"))

    def close(self) -> None:
        """Resigns everything and ends the session. Idempotent, and safe to call from
        several threads at once: the first call closes, the others wait for it."""
        with self._closing:
            if self._closed_once:
                return
            self._closed_once = True
            self.closing.set()
            with self._lock:
                leaderships = list(self._by_ticket.values())
            for leadership in leaderships:
                leadership.end_resigned("the client was closed")
            self.keeper.close()
            with self._lock:
                pending, self._withdrawals = self._withdrawals, []
            for thread in pending:
                thread.join(timeout=self.ttl)
            self.store.close()

    def idle(self) -> bool:
        """True when this client campaigns and leads nowhere, no handoff or withdrawal is
        in flight (:meth:`in_use`) or left to retry, and its session is open with enough
        validity ahead (:meth:`SessionKeeper.idle`): a new campaign on it is like one on
        a fresh client with the session already open. ``tenure serve`` reuses such clients
        for one caller at a time (docs/http.md, "Warm sessions")."""
        with self._lock:
            if (self._active or self._by_ticket or self._uses
                    or any(thread.is_alive() for thread in self._withdrawals)):
                return False
        return self.keeper.idle()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Keeps :meth:`idle` False while core code works on this client outside what it
        tracks as held: a handoff for its whole run (following the election, a
        ``keep`` re-campaign), a resign from the moment its leadership is forgotten
        until its entry is given back. Nests; any thread."""
        with self._lock:
            self._uses += 1
        try:
            yield
        finally:
            with self._lock:
                self._uses -= 1

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- bookkeeping for Election and Leadership ------------------------------------

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
            self._by_ticket[leadership.ticket] = leadership
            early = self._early_losses.pop(leadership.ticket, None)
        if early is not None:
            leadership.mark_lost(early)

    def forget(self, leadership: Leadership) -> None:
        """Called by a leadership as it ends: it no longer counts as held."""
        with self._lock:
            self._early_losses.pop(leadership.ticket, None)
            if self._active.get(leadership.election) is leadership:
                del self._active[leadership.election]
            self._by_ticket.pop(leadership.ticket, None)
        self.keeper.release(leadership.ticket)

    def _leadership_of(self, name: str) -> Leadership | None:
        with self._lock:
            return self._active.get(name)

    def _lost(self, ticket: Ticket, reason: str) -> None:
        with self._lock:
            leadership = self._by_ticket.get(ticket)
            if leadership is None and ticket.won and not ticket.withdrawn:
                # Won, but the campaign has not handed out its Leadership yet: the loss
                # is applied the moment it does (see _held), never dropped.
                self._early_losses[ticket] = reason
        if leadership is not None:
            leadership.mark_lost(reason)

    def _lost_from_store(self, ticket: Ticket, reason: str) -> None:
        self.keeper.release(ticket)
        self._lost(ticket, reason)

    def withdraw_now(self, ticket: Ticket) -> None:
        """Gives an entry back in the caller's thread (resign)."""
        withdraw_quietly(self.store, ticket, self.keeper)

    def withdraw_in_background(self, ticket: Ticket) -> None:
        """Gives a lost entry back without blocking the caller (a watchdog or adapter
        thread); :meth:`close` waits for these before closing the store."""
        thread = threading.Thread(
            target=withdraw_quietly, args=(self.store, ticket, self.keeper),
            name="tenure-withdraw",
            daemon=True,
        )
        with self._lock:
            # Started under the lock: close() takes the list under it and joins each
            # thread, and joining one not yet started raises.
            thread.start()
            self._withdrawals = [t for t in self._withdrawals if t.is_alive()]
            self._withdrawals.append(thread)


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
        priority: int | None = None,
        on_preferred: PreferredCallback | None = None,
    ) -> Leadership:
        """Blocks until this client's candidate leads and returns the Leadership.

        Candidates are served in arrival order where the store has one. ``timeout=0``
        tries exactly once. Raises CampaignTimeout after ``timeout`` seconds,
        CampaignCancelled once ``cancel`` is set or the client is closed (from any
        thread), UsageError if this client already
        campaigns here; on any of these the queue entry is removed.
        A ``cancel`` that is a :class:`tenure.cancel.Flag` (or none) wakes the wait at
        once; a plain :class:`threading.Event` is checked every 0.2 s.
        ``on_lost(leadership, reason)`` is called once if the leadership is later lost
        (never on resign). ``priority`` (a whole number, higher preferred) is shown to
        every other candidate in :meth:`contenders`; ``on_preferred(leadership,
        contender)`` is called while leading when a higher-priority candidate waits
        (:mod:`tenure.priority`; it only tells -- arrival order still decides who leads
        unless the leader yields)."""
        client = self.client
        data = check_value(value, client.settings.max_value_bytes)
        declared = check_priority(priority)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not timeout >= 0
        ):
            raise ConfigError(
                f"campaign timeout {timeout!r} must be a number of seconds >= 0, or None"
            )
        client._reserve(self.name)
        started = time.monotonic()
        campaign = Campaign(client.store, client.keeper, self.name, client.candidate_id,
                            data, timeout, _any_of(cancel, client.closing),
                            closed=client.closing)
        campaign.describe_leader = lambda: _describe(self.leader_or_none())
        campaign.admits = client.handoff_gate.admits
        campaign.priority = declared
        try:
            leadership = self._win(campaign, data)
        except BaseException:
            client._unreserve(self.name)
            raise
        if on_lost is not None:
            leadership.on_lost(on_lost)
        leadership.priority = declared or 0
        client._held(leadership)
        if on_preferred is not None:
            leadership.on_preferred(on_preferred)
        if leadership.state is not State.HELD:
            client.forget(leadership)
        log.info(
            "leadership won: election=%s candidate=%s token=%d",
            self.name, client.candidate_id, leadership.token,
        )
        events.publish("campaign_won", election=self.name, candidate_id=client.candidate_id,
                       token=leadership.token, waited=time.monotonic() - started)
        return leadership

    def _win(self, campaign: Campaign, data: bytes) -> Leadership:
        client = self.client
        while True:
            ticket, token, generation = campaign.run()
            if client.keeper.adopt(ticket, generation) is not None:
                return Leadership(client, ticket, data, token)
            # Won on a session that is past its deadline (a paused waiter): this
            # leadership may already be void in the store. Give the entry back and
            # queue again.
            withdraw_quietly(client.store, ticket, client.keeper)
            with client._lock:
                client._early_losses.pop(ticket, None)

    @property
    def closed(self) -> bool:
        """True once this election's client was closed."""
        return self.client.closed

    @property
    def ttl(self) -> float:
        """The client's session TTL in seconds."""
        return self.client.ttl

    def leader(self) -> LeaderInfo | None:
        """The current leader (id, value, token) by a linearizable read, or None."""
        return self.client.store.leader(self.name)

    def contenders(self) -> list[Contender]:
        """Every live candidate here -- the leader and each waiter -- as the store lists
        them (in arrival order where it has one), like kazoo's ``Election.contenders()``,
        each with the priority it declared (0 when none)."""
        return with_priorities(self.client.store, self.name)

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

        Runs until ``stop`` is set, ``timeout`` seconds pass or the client is closed
        (from any thread). Store outages are
        retried; after one the state is re-read, so the latest state is never missed
        (intermediate leaders that came and went during an outage may be)."""
        end = None if timeout is None else time.monotonic() + timeout
        return observe(self.client.store, self.name,
                       _any_of(stop, self.client.closing), end)

    def run(
        self,
        work: Callable[[Leadership], object],
        *,
        value: bytes | str = b"",
        on_started: Callable[[Leadership], None] | None = None,
        on_stopped: Callable[[Leadership, str], None] | None = None,
        on_new_leader: Callable[[LeaderInfo | None], None] | None = None,
        stop: threading.Event | None = None,
        accept_handoff_requests: bool = False,
        priority: int | None = None,
        prefer_priority: bool = False,
        on_preferred: PreferredCallback | None = None,
    ) -> None:
        """Leads forever: campaigns, calls ``work(leadership)`` while leading (its
        ``leadership.ended`` event is set the moment it ends), calls ``on_stopped`` on
        every end, and campaigns again after a loss with back-off. Returns when
        ``work`` returns, ``stop`` is set or the client is closed; see
        :mod:`tenure.runloop` for every rule and what it does not do.
        ``accept_handoff_requests``: serve ``tenure handoff`` requests while leading.
        ``priority``, ``on_preferred``, ``prefer_priority`` (default off: first come,
        first served): see :mod:`tenure.runloop`."""
        run_forever(self, work, value=value, on_started=on_started, on_stopped=on_stopped,
            on_new_leader=on_new_leader, stop=stop,
            accept_handoff_requests=accept_handoff_requests, priority=priority,
            prefer_priority=prefer_priority, on_preferred=on_preferred)

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


def _any_of(caller: threading.Event | None, closing: Flag) -> AnyOf:
    """The caller's event (if any) or the client's close. Without a caller's event, or
    with a :class:`tenure.cancel.Flag`, waits are woken rather than polled."""
    return AnyOf(closing) if caller is None else AnyOf(caller, closing)


def _describe(info: LeaderInfo | None) -> str:
    return "none" if info is None else f"{info.candidate_id} token {info.token}"
