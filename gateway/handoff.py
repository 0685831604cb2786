"""Planned handoff to a named successor, written once over the store interface.

    result = lead.handoff(to="db-2", timeout=10, on_failure="keep")
    if not result.ok:
        log.warning("%s", result.message)      # names the candidate and what happened

How it works on every backend (no adapter knows about it):

1. The leader checks that ``to`` is a live contender (:meth:`Store.contenders`).
2. It writes a *handoff marker* with :meth:`Store.guarded_write` -- fenced by its own
   leadership, so only the current leader can write one -- under the key
   ``.tenure-handoff/<election>``: the successor's id, the leader's id and token, the
   timeout and whether the old leader wants to keep leading on failure.
3. It releases its entry (a plain resign).
4. Every campaign that the store lets win passes :class:`HandoffGate` before it is
   reported as won: ONE linearizable read of the marker key -- made by the adapter in
   the store step that decided the win where it can (``Ticket.read_on_win``), else a
   separate :meth:`Store.read` after it. A winner that is not the
   named successor steps aside -- withdraws its entry and queues again, without ever
   returning Won to its user -- while the marker is unconsumed, was written under a
   lower token, names a candidate that is still a live contender, and this winner's
   own monotonic clock has not counted the marker's timeout since it first saw it.
   The named successor (or, after the timeout, whoever wins) consumes the marker
   (a guarded write) and leads with a larger token.

What this does NOT promise: that the successor is alive one instant after the check
(a successor that dies after the release is passed over once every winner's own
clock has counted the timeout); that "keep leading" keeps the OLD token (after the
release it cannot: the old leader queues again at once and is preferred by the
others while the successor is gone, so it usually leads again, with a new token;
when it loses that race the result says who leads). Wall clocks are never compared:
each process counts the timeout on its own ``time.monotonic()``. Cost on the normal
path: one read of the marker key per won campaign (not per step; measured in
docs/leading.md), inside the winning step -- no round trip of its own -- on every
adapter but Kubernetes; nothing per renewal or per wait.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from tenure import events
from tenure.campaign import wait_for
from tenure.cancel import AnyOf, Flag
from tenure.errors import ConfigError, NotLeader, SessionExpired, TenureError
from tenure.names import MAX_NAME_LENGTH, check_candidate_id
from tenure.store import LeaderInfo, Store, Ticket, Wait, Won

if TYPE_CHECKING:
    from tenure.leadership import Leadership

log = logging.getLogger("tenure")

MARKER_SEGMENT = ".tenure-handoff"
"""First path segment of the marker key (guarded-write keys have their own namespace
in every adapter, so it never collides with an election's entries)."""

OnFailure = Literal["keep", "resign"]
ON_FAILURE: tuple[OnFailure, ...] = ("keep", "resign")
L = TypeVar("L")


def side_name(segment: str, election: str) -> str:
    """``<segment>/<election>``: a name of tenure's own beside ``election`` and outside
    its key range (native layouts list everything under ``<election>/`` as its
    candidates). Where that would pass 200 characters, ``<segment>-h/<sha256 of the
    name>`` instead, so every valid election name has one."""
    name = f"{segment}/{election}"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return f"{segment}-h/{hashlib.sha256(election.encode()).hexdigest()}"


def marker_key(election: str) -> str:
    """The guarded-write key of ``election``'s handoff marker."""
    return side_name(MARKER_SEGMENT, election)


@dataclass(frozen=True)
class Marker:
    """A handoff marker as stored (JSON). ``done`` once a winner took the election."""

    id: str
    to: str
    by: str
    token: int
    timeout: float
    keep: bool
    done: bool = False
    taken_by: str = ""
    taken_token: int = 0
    """The token the taker leads with (0 in markers of tenure before it was recorded)."""
    request: str = ""
    refused: str = ""

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Marker | None:
        """The marker in ``raw``, or None (nothing there, or not a marker)."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring a malformed handoff marker: %r", raw[:200])
            return None


class HandoffGate:
    """Decides, after the store let a ticket win, whether it may lead now or must
    step aside for a named successor (see the module docstring). One per client:
    it remembers, per marker, when this client first saw it (monotonic)."""

    def __init__(self) -> None:
        self._first_seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.reads = 0
        """Marker reads made (for the cost measurement), in the winning step or not."""
        self.separate_reads = 0
        """Those of :attr:`reads` made by a separate :meth:`Store.read` (a round trip of
        their own: the adapter did not read the marker with the winning step)."""

    def admits(self, store: Store[Any], ticket: Ticket, won: Won) -> bool:
        """True: ``ticket`` (which the store just let win with ``won.token``) leads.
        False: it must step aside (the caller withdraws it and queues again).

        The marker is the one the adapter read in the winning step itself where it did
        (``won.read_done`` for this key: no extra round trip); else -- the default for
        every adapter without that capability, and for a retried call -- ONE separate
        :meth:`Store.read`."""
        key = marker_key(ticket.election)
        token = won.token
        self.reads += 1
        if won.read_done and ticket.read_on_win == key:
            raw = won.read
        else:
            self.separate_reads += 1
            raw = store.read(key)
        marker = Marker.decode(raw)
        if marker is None or marker.done or marker.refused or marker.token >= token:
            return True
        me = ticket.candidate_id
        if marker.to != me and not self._expired(marker):
            live = {c.candidate_id for c in store.contenders(ticket.election)}
            if marker.to in live:
                log.info("handoff in %s: %s steps aside for %s", ticket.election, me, marker.to)
                events.publish("handoff_step_aside", election=ticket.election,
                               candidate_id=me, successor=marker.to)
                return False
            if marker.keep and marker.by != me and marker.by in live:
                return False
        self._consume(store, ticket, key, marker, token)
        return True

    def _expired(self, marker: Marker) -> bool:
        now = time.monotonic()
        with self._lock:
            first = self._first_seen.setdefault(marker.id, now)
        return now - first >= marker.timeout

    def _consume(self, store: Store[Any], ticket: Ticket, key: str, marker: Marker,
                 token: int) -> None:
        done = Marker(**{**marker.__dict__, "done": True, "taken_by": ticket.candidate_id,
                         "taken_token": token})
        try:
            store.guarded_write(ticket, key, done.encode())
        except NotLeader as exc:
            # Won a moment ago and already refused: the entry died; queue again.
            raise SessionExpired(f"the entry lost its lead while taking over: {exc}") from None
        with self._lock:
            self._first_seen.pop(marker.id, None)


def taker(store: Store[Any], election: str, marker: Marker) -> LeaderInfo:
    """The leader that consumed ``marker`` (``marker.done``): as the store lists it now
    if that is still the taker with the token it took, else built from the marker
    (value empty) -- also when the store cannot be asked: the marker already says who
    took over, so a handoff that succeeded is not reported as a store error. A leader
    listing read before the marker is not enough: SQLite and PostgreSQL list the first
    live entry, which may be a waiter in the middle of stepping aside while the
    successor behind it takes over."""
    try:
        current = store.leader(election)
    except TenureError:
        current = None
    if (current is not None and current.candidate_id == marker.taken_by
            and marker.taken_token in (0, current.token)):
        return current
    return LeaderInfo(election, marker.taken_by, b"", marker.taken_token)


@dataclass
class HandoffResult(Generic[L]):
    """What :meth:`Leadership.handoff` did.

    ``ok``: the named ``candidate`` leads now with a larger token (``leader``).
    Otherwise ``message`` says why, naming the candidate; ``leadership`` is this
    candidate's leadership if it still leads (the same one when the handoff failed
    before the release, a new one -- with a new token -- when it led again after
    it), else None. ``released`` says whether the old leadership was given up."""

    ok: bool
    candidate: str
    message: str
    released: bool
    leader: LeaderInfo | None = None
    leadership: L | None = None
    elapsed: float = 0.0
    token: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form (for the CLI and the HTTP gateway)."""
        kept = self.leadership is not None
        return {
            "ok": self.ok, "candidate": self.candidate, "message": self.message,
            "released": self.released, "still_leading": kept,
            "leader": None if self.leader is None else self.leader.as_dict(),
            "elapsed": round(self.elapsed, 6), "from_token": self.token,
        }


def check_handoff_args(to: object, timeout: object, on_failure: object) -> tuple[str, float]:
    """Validates the arguments of a handoff (errors name the input and the fix)."""
    successor = check_candidate_id(to)
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not 0 < timeout <= 3600):
        raise ConfigError(f"handoff timeout {timeout!r} must be a number of seconds in "
                          "(0, 3600]")
    if on_failure not in ON_FAILURE:
        raise ConfigError(f"on_failure {on_failure!r} must be 'keep' or 'resign'")
    return successor, float(timeout)


def hand_off(
    lead: Leadership, election: Any, to: str, timeout: float, on_failure: OnFailure,
    request: str = "", recampaign: bool = True,
    before_release: Callable[[], object] | None = None,
) -> HandoffResult[Leadership]:
    """Implements :meth:`Leadership.handoff`; ``election`` is the client's Election
    (for the re-campaign of ``keep``). ``request`` names a remote request (acked in
    the marker); ``recampaign=False`` leaves the re-campaign of ``keep`` to the
    caller (a run loop campaigns again by itself). ``before_release`` (``tenure run``
    stops its command there) is called once the handoff is decided and before this
    leadership is given up -- before the marker write of a handoff, before the resign
    of a refused one with ``resign`` -- never when nothing is released; what it
    raises propagates and nothing is released."""
    started = time.monotonic()
    store: Store[Any] = election.client.store
    key = marker_key(lead.election)
    keep = on_failure == "keep"

    def result(ok: bool, message: str, released: bool, leader: LeaderInfo | None = None,
               leadership: Leadership | None = None) -> HandoffResult[Leadership]:
        outcome = HandoffResult(ok, to, message, released, leader, leadership,
                                time.monotonic() - started, lead.token)
        events.publish("handoff_finished", election=lead.election, candidate_id=lead.candidate_id,
                       successor=to, ok=ok, released=released, elapsed=outcome.elapsed)
        (log.info if ok else log.warning)("handoff in %s: %s", lead.election, message)
        return outcome

    lead.ensure()
    if to == lead.candidate_id:
        return _refuse(lead, key, request, to, keep, result,
                       f"{to!r} is this leader itself; name another candidate",
                       before_release)
    contenders = [c.candidate_id for c in store.contenders(lead.election)]
    others = [c for c in contenders if c != lead.candidate_id]
    if to not in others:
        listed = ", ".join(others) or "none"
        return _refuse(lead, key, request, to, keep, result,
                       f"candidate {to!r} is not a live contender of election "
                       f"{lead.election!r} (waiting: {listed})", before_release)
    stopping = time.monotonic()
    if before_release is not None:
        before_release()
    stopped_for = time.monotonic() - stopping  # not counted against the timeout
    marker = Marker(uuid.uuid4().hex, to, lead.candidate_id, lead.token, timeout, keep,
                    request=request)
    lead.guarded_write(key, marker.encode())
    lead.handed_off_to = to
    lead.end_resigned(f"handed off to {to}")
    again: list[Leadership] = []
    cancel = Flag()  # wakes the re-campaign at once when set, not at its next slice
    campaigner = None
    if keep and recampaign:
        campaigner = threading.Thread(target=_campaign_again, name="tenure-handoff-keep",
                                      args=(election, lead.value, timeout, cancel, again,
                                            lead.priority or None),
                                      daemon=True)
        campaigner.start()
    end = started + stopped_for + timeout
    succeeded: LeaderInfo | None = None
    try:
        succeeded = _watch(store, lead, to, marker.id, end, campaigner, election.client.ttl)
    finally:
        if campaigner is not None:
            cancel.set()
            campaigner.join()
    if succeeded is not None:
        for late in again:  # won in the instant the successor resigned: not wanted
            late.resign()
        return result(True, f"handed off election {lead.election!r} to {to!r} "
                      f"(token {lead.token} -> {succeeded.token})", True, succeeded)
    now = election.leader_or_none()
    kept = again[0] if again else None
    if kept is not None:
        how = f"this candidate leads again with a new token {kept.token}"
    else:
        who = "nobody" if now is None else f"{now.candidate_id!r} (token {now.token})"
        how = f"this candidate does not lead; the leader is {who}"
    return result(False, f"candidate {to!r} did not take over election {lead.election!r} "
                  f"within {timeout:g} s; {how}", True, now, kept)


def _watch(
    store: Store[Any], lead: Leadership, to: str, marker_id: str, end: float,
    campaigner: threading.Thread | None, ttl: float,
) -> LeaderInfo | None:
    """Follows the election after the release until ``to`` leads (returned), this
    candidate leads again (its re-campaign ``campaigner`` returned, or the marker
    consumed by it), another candidate took over for good (the marker consumed by
    it), or ``end``. A winner seen while the marker is unconsumed may be one that
    steps aside -- this candidate's own re-campaign too: where the store keeps no
    arrival order (Kubernetes) it can take the election before the successor and then
    step aside for it -- so it is looked at again shortly (the store signals no marker
    write). Once that re-campaign was seen leading, the watch lasts up to ``ttl``
    past ``end``: its own clock counts the timeout from its first win after the release,
    so with a successor that stays listed but never takes over it consumes the marker
    and leads again only after ``end`` (the caller cancels it once this returns).
    Between looks it sleeps on the store's signal until that fires, its ``retry_at``
    or the end: ``never`` is an AnyOf of a Flag, so an interruptible signal is not
    woken every WAIT_SLICE to check it."""
    key = marker_key(lead.election)
    never = AnyOf(Flag())
    until = end
    while time.monotonic() < until:
        try:
            leader, step = store.observe_step(lead.election)
        except TenureError as exc:
            log.warning("handoff in %s: store unavailable (retrying): %s", lead.election, exc)
            never.wait(min(0.2, max(0.0, until - time.monotonic())))
            continue
        with step.signal:
            if leader is not None and leader.token > lead.token:
                if leader.candidate_id == lead.candidate_id and campaigner is not None:
                    if not campaigner.is_alive():
                        return None  # the re-campaign returned: it leads again (or gave up)
                    until = end + ttl
                # Some stores list the first live entry as leader before it stepped
                # (SQLite), and a winner may still step aside (this candidate's own
                # re-campaign included): only the marker, consumed by the taker, says
                # who took over.
                try:
                    marker = Marker.decode(store.read(key))
                except TenureError:
                    marker = None
                if marker is not None and marker.id == marker_id and marker.done:
                    if marker.taken_by == to:
                        return taker(store, lead.election, marker)
                    if campaigner is not None and marker.taken_by == lead.candidate_id:
                        # Its re-campaign took over: let it return its leadership.
                        campaigner.join(max(0.0, end - time.monotonic()) + ttl)
                    return None
                step = Wait(step.signal, time.monotonic() + 0.05)
            wait_for(step, until, never)
    return None


def _refuse(
    lead: Leadership, key: str, request: str, to: str, keep: bool,
    result: Any, why: str, before_release: Callable[[], object] | None = None,
) -> HandoffResult[Leadership]:
    """A handoff refused before anything was released: ack a remote request in the
    marker (while still leading), then keep leading or resign as asked."""
    if request:
        refused = Marker(uuid.uuid4().hex, to, lead.candidate_id, lead.token, 0.0, keep,
                         done=True, request=request, refused=why)
        lead.guarded_write(key, refused.encode())
    if keep:
        outcome: HandoffResult[Leadership] = result(False, f"{why}; still leading", False,
                                                    leadership=lead)
        return outcome
    if before_release is not None:
        before_release()
    lead.end_resigned(f"handoff refused ({why}); resigned as asked")
    resigned: HandoffResult[Leadership] = result(False, f"{why}; resigned as asked", True)
    return resigned


def _campaign_again(election: Any, value: bytes, timeout: float, cancel: threading.Event,
                    out: list[Leadership], priority: int | None = None) -> None:
    """``keep``: queue again at once; the other waiters prefer this candidate while the
    successor is not a live contender (see :class:`HandoffGate`)."""
    try:
        out.append(election.campaign(value, timeout=timeout, cancel=cancel,
                                     priority=priority))
    except TenureError as exc:
        log.info("handoff: campaigning again ended: %s", exc)
