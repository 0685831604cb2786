"""What a won campaign returns: one leadership, its validity, and how it ends.

    with election.campaign(value=b"10.0.0.7") as lead:   # a Leadership
        lead.ensure()                     # LeadershipLost once the deadline passed
        write(batch, fencing_token=lead.token)

A :class:`Leadership` is in exactly one :class:`State`: HELD, then LOST or RESIGNED,
never back. It is LOST when its validity deadline passes (no successful renewal was
SENT within the guaranteed lifetime), when the store ended the session, when the
adapter reports the entry gone, or when the store refuses a guarded write or proclaim
(a refused conditional write proves that someone else leads). ``on_lost`` callbacks
fire once, on LOST only. Resigning is not a loss: ``ensure()`` then raises NotLeader.

What this does NOT do: stop code that ignores ``ensure()`` and ``on_lost``. Pass
:attr:`Leadership.token` to what you change and check it there (:mod:`tenure.fencing`),
or use ``tenure run``, which stops its child at the deadline.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from tenure import events
from tenure.cancel import Flag
from tenure.config import Settings
from tenure.errors import LeadershipLost, NotLeader
from tenure.names import check_election_name, check_value
from tenure.session import SessionKeeper
from tenure.store import Contender, Store, Ticket

if TYPE_CHECKING:
    from tenure.handoff import HandoffResult, OnFailure
    from tenure.priority import PreferenceWatch

log = logging.getLogger("tenure")

_MAKING_PREFERRED = threading.Lock()

LostCallback = Callable[["Leadership", str], None]
PreferredCallback = Callable[["Leadership", Contender], None]


class Owner(Protocol):
    """What a leadership needs of the client that won it (:class:`tenure.client.Client`
    is one); a protocol, so this module does not import the client's."""

    settings: Settings
    store: Store[Any]
    keeper: SessionKeeper

    def election(self, name: str) -> Any: ...
    def in_use(self) -> AbstractContextManager[None]: ...
    def forget(self, leadership: Leadership) -> None: ...
    def withdraw_now(self, ticket: Ticket) -> None: ...
    def withdraw_in_background(self, ticket: Ticket) -> None: ...


class State(enum.Enum):
    """The lifecycle of one leadership: HELD -> LOST or HELD -> RESIGNED."""

    HELD = "held"
    LOST = "lost"
    RESIGNED = "resigned"


class Leadership:
    """A won campaign: election, candidate id, value, fencing token, deadline.

    Valid until :attr:`deadline` (monotonic) unless it ended earlier; check with
    :meth:`ensure` before acting and pass :attr:`token` to what you change. As a
    context manager it resigns on exit. Callbacks from :meth:`on_lost` run in a tenure
    thread: keep them short (set a flag, signal a worker)."""

    def __init__(self, client: Owner, ticket: Ticket, value: bytes, token: int) -> None:
        self._client = client
        self._ticket = ticket
        self.election = ticket.election
        self.candidate_id = ticket.candidate_id
        self.value = value
        self.token = token
        self._lock = threading.Lock()
        self._state = State.HELD
        self._ended = Flag()
        self._reason = ""
        self._callbacks: list[LostCallback] = []
        self.elected_at = time.monotonic()
        self.ended_at: float | None = None
        self.handed_off_to: str | None = None
        """The successor named when this leadership was released by a handoff."""
        self.priority = 0
        """The priority this candidate declared (0 when none; :mod:`tenure.priority`)."""
        self._preferred: threading.Event | None = None  # made on first use: see preferred
        self._preferred_callbacks: list[PreferredCallback] = []
        self._watch: PreferenceWatch | None = None

    def __repr__(self) -> str:
        state = self.state
        detail = f"valid for {self.remaining():.2f} s" if state is State.HELD else self._reason
        return f"<Leadership {self.election!r} token={self.token} {state.value}: {detail}>"

    @property
    def ticket(self) -> Ticket:
        """The store entry behind this leadership (for adapters and the conformance
        suite, which writes through the store directly to prove its guards)."""
        return self._ticket

    @property
    def state(self) -> State:
        """HELD, LOST or RESIGNED; a HELD leadership past its deadline becomes LOST here."""
        if self._state is State.HELD and time.monotonic() >= self._client.keeper.valid_until:
            self.mark_lost(self._client.keeper.deadline_reason())
        return self._state

    @property
    def ended(self) -> threading.Event:
        """Set the moment this leadership ends: resigned, or lost (deadline passed,
        session ended, write refused) once the ``on_lost`` callbacks ran. Work can wait
        on it: ``lead.ended.wait(1.0)``. Read it; do not set it (use :meth:`resign`)."""
        return self._ended

    @property
    def deadline(self) -> float:
        """Monotonic time (``time.monotonic()``) after which this leadership is void."""
        if self._state is not State.HELD:
            return self.ended_at or self.elected_at
        return self._client.keeper.valid_until

    def remaining(self) -> float:
        """Seconds of validity left (0 once ended)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def lost(self) -> bool:
        """True once LOST (deadline passed, session ended, entry gone, write refused);
        False while held and after a plain resign."""
        return self.state is State.LOST

    @property
    def lost_reason(self) -> str:
        """Why leadership ended ("" while held; "resigned" after a resign)."""
        return self._reason

    def ensure(self) -> None:
        """Returns if still held and valid. Raises LeadershipLost (with the reason) once
        lost, NotLeader after a resign."""
        state = self.state
        if state is State.LOST:
            raise LeadershipLost(
                f"leadership of election {self.election!r} (token {self.token}) is lost: "
                f"{self._reason}"
            )
        if state is State.RESIGNED:
            raise NotLeader(
                f"this candidate resigned its leadership of election {self.election!r} "
                f"(token {self.token}); campaign again to lead"
            )

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Blocks until the leadership ends, lost or resigned (True, after any
        ``on_lost`` callbacks ran), or until ``timeout`` passes (False).

        Sleeps on :attr:`ended` alone, woken by whatever ends the leadership: a
        resign or the client's close, a lost session or refused write, and at the
        validity deadline the session's watchdog (a thread that does no I/O, woken
        for each held deadline), so nothing wakes in between to look."""
        if self._ended.wait(timeout):
            return True
        _ = self.state  # past the deadline, this ends it as LOST (callbacks first)
        return self._ended.is_set()

    def on_lost(self, callback: LostCallback) -> None:
        """Registers ``callback(leadership, reason)``; called once on loss (at once if
        already lost). Never called on resign."""
        with self._lock:
            if self._state is State.HELD:
                self._callbacks.append(callback)
                return
            fire = self._state is State.LOST
        if fire:
            _call(callback, self, self._reason)

    def resign(self) -> None:
        """Releases leadership at once so the next candidate leads promptly.
        A no-op if already resigned or lost."""
        self.end_resigned("resigned")

    def handoff(
        self, to: str, *, timeout: float = 10.0, on_failure: str = "keep",
        recampaign: bool = True,
    ) -> HandoffResult[Leadership]:
        """Hands leadership to the waiting candidate ``to``: it becomes the next leader,
        with a larger token, and no other waiter is reported won in between (they step
        aside; see :mod:`tenure.handoff`). Blocks until ``to`` leads or ``timeout``
        seconds passed. Never raises for a failed handoff: the result says what
        happened, naming the candidate. ``on_failure="keep"``: when ``to`` is not a
        live contender this leadership is kept (nothing was released); when ``to``
        does not take over after the release, this candidate queues again at once and
        the others let it lead again -- with a NEW token (``result.leadership``).
        ``on_failure="resign"``: it stays resigned. NotLeader if this leadership has
        already ended; ConfigError for bad arguments. ``recampaign=False``: with
        ``keep``, do not queue again here (a run loop does that by itself)."""
        from tenure.handoff import check_handoff_args, hand_off

        successor, seconds = check_handoff_args(to, timeout, on_failure)
        self._require_held("handoff")
        mode: OnFailure = "keep" if on_failure == "keep" else "resign"
        with self._client.in_use():  # the client is not idle while the handoff runs
            return hand_off(self, self._client.election(self.election), successor, seconds,
                            mode, recampaign=recampaign)

    @property
    def preferred(self) -> threading.Event:
        """Set while a live waiter of higher priority than this leader's is known
        (only watched once :meth:`on_preferred` was called, or in a run loop with
        ``prefer_priority``). Work can check it at its safe points and then call
        :meth:`yield_to_preferred`. Read it; do not set it."""
        # Made here, not per win: an Event costs the winning path a Condition.
        event = self._preferred
        if event is None:
            with _MAKING_PREFERRED:  # (not self._lock: callers may hold it)
                if self._preferred is None:
                    self._preferred = threading.Event()
                event = self._preferred
        return event

    def on_preferred(self, callback: PreferredCallback) -> None:
        """Registers ``callback(leadership, contender)``, called (from a tenure thread)
        once per higher-priority candidate found waiting while this leadership is held;
        the first registration starts the one watch (:class:`tenure.priority.PreferenceWatch`).
        It only tells: handing over is the leader's choice (:meth:`yield_to_preferred`)."""
        from tenure.priority import PreferenceWatch

        with self._lock:
            self._preferred_callbacks.append(callback)
            start = self._watch is None and self._state is State.HELD
            if start:
                self._watch = PreferenceWatch(self, self._client.store, self.priority)

    def tell_preferred(self, contender: Contender) -> None:
        """Calls the ``on_preferred`` callbacks (the watch does, once per candidate)."""
        with self._lock:
            callbacks = list(self._preferred_callbacks)
        for callback in callbacks:
            try:
                callback(self, contender)
            except Exception:
                log.exception("on_preferred callback failed")

    def yield_to_preferred(
        self, *, timeout: float = 10.0, on_failure: str = "keep", recampaign: bool = True,
    ) -> HandoffResult[Leadership] | None:
        """Hands off (:meth:`handoff`) to the live waiter of the highest priority above
        this leader's, if there is one; None (nothing done) otherwise. Call it at a safe
        point of your work: tenure never pre-empts a leader for a priority."""
        from tenure.priority import best_waiter, with_priorities

        self._require_held("yield to a preferred candidate")
        best = best_waiter(with_priorities(self._client.store, self.election),
                           self.candidate_id, self.priority)
        if best is None:
            self.preferred.clear()
            return None
        return self.handoff(best.candidate_id, timeout=timeout, on_failure=on_failure,
                            recampaign=recampaign)

    def proclaim(self, value: bytes | str) -> None:
        """Changes this leader's value without giving up leadership. NotLeader if it is
        no longer held; a refusal by the store also marks the leadership lost."""
        data = check_value(value, self._client.settings.max_value_bytes)
        self._require_held("proclaim")
        self._conditional(lambda: self._client.store.proclaim(self._ticket, data))
        self.value = data

    def guarded_write(self, key: str, value: bytes | str) -> None:
        """Writes ``value`` under ``key`` in the store, committed only if this candidate
        still leads (one store transaction). NotLeader otherwise, and a refusal by the
        store also marks the leadership lost (someone else leads)."""
        key = check_election_name(key, what="guarded-write key")
        data = check_value(value, self._client.settings.max_value_bytes)
        self._require_held("guarded write")
        self._conditional(lambda: self._client.store.guarded_write(self._ticket, key, data))

    def _conditional(self, write: Callable[[], None]) -> None:
        try:
            write()
        except NotLeader as exc:
            self.mark_lost(f"the store refused a conditional write: {exc}")
            raise

    def _require_held(self, action: str) -> None:
        state = self.state
        if state is not State.HELD:
            raise NotLeader(
                f"{action} refused: leadership of election {self.election!r} (token "
                f"{self.token}) has ended ({state.value}: {self._reason})"
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

    # -- the one place a leadership ends -------------------------------------------

    def _end(self, state: State, reason: str) -> bool:
        with self._lock:
            if self._state is not State.HELD:
                return False
            self._state = state
            self._reason = reason
            self.ended_at = time.monotonic()
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop(wait=False)
        self._client.forget(self)
        return True

    def end_resigned(self, reason: str) -> None:
        """Ends as RESIGNED and gives the entry back now (the caller's thread)."""
        with self._client.in_use():  # not idle between forget() and the withdrawal
            if not self._end(State.RESIGNED, reason):
                return
            self._ended.set()
            self._client.withdraw_now(self._ticket)
            events.publish("leadership_released", election=self.election,
                           candidate_id=self.candidate_id, token=self.token, reason=reason)
            log.info("leadership released: election=%s token=%d (%s)",
                     self.election, self.token, reason)

    def mark_lost(self, reason: str) -> None:
        """Ends as LOST: fires ``on_lost`` once, then gives the entry back in the
        background (the entry may still exist, e.g. after a pause; the next candidate
        should not wait for the session to expire). Idempotent; safe from any thread."""
        if not self._end(State.LOST, reason):
            return
        log.warning("leadership lost: election=%s token=%d: %s", self.election, self.token, reason)
        late = max(0.0, (self.ended_at or 0.0) - self._client.keeper.valid_until)
        events.publish("leadership_lost", election=self.election, candidate_id=self.candidate_id,
                       token=self.token, reason=reason, late=late)
        with self._lock:
            callbacks = list(self._callbacks)
        try:
            for callback in callbacks:
                _call(callback, self, reason)
        finally:
            # Set after the callbacks, so whoever waits on `ended` / wait_lost() sees
            # every on_lost effect (the state is LOST from the first line on).
            self._ended.set()
        self._client.withdraw_in_background(self._ticket)


def _call(callback: LostCallback, leadership: Leadership, reason: str) -> None:
    try:
        callback(leadership, reason)
    except Exception:
        log.exception("on_lost callback failed")

