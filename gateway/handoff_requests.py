"""Handoff requested from outside the leader's process (``tenure handoff``).

    # in the leader's process (Election.run(..., accept_handoff_requests=True) does this)
    listener = HandoffListener(lead)
    # anywhere else
    outcome = request_handoff(client, "jobs/nightly", to="db-2", timeout=10)

Only the leader can hand off (the marker is a write fenced by its token), so a request
travels through the store like everything else, with nothing but the store interface:

* The requester campaigns in the side election ``.tenure-handoff-request/<election>``
  with the request (successor, timeout, on_failure, a request id) as its VALUE; while
  it leads there, that is the one pending request (a second requester waits).
* A leader that accepts requests observes that side election (one watch, one thread,
  only while it leads), and runs :func:`tenure.handoff.hand_off` for each new request,
  tagging the marker with the request id -- a refused request is answered by a
  consumed marker that says why. A request the marker already answers is not served
  again (the leadership that won again after a failed handoff, or the successor, sees
  it still pending until the requester has read the answer).
* The requester follows the marker key: acknowledged (the id appears), then done
  (``taken_by``). The store signals no marker write, so it re-reads the key every
  ``POLL`` seconds -- only while a request is pending, an operator's action.

What it does NOT do: reach a leader that does not accept requests (a plain
``campaign()`` holder, ``tenure run`` without ``--accept-handoff``): the requester
then reports that no leader answered within the timeout, naming the leader.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tenure.campaign import observe
from tenure.cancel import Flag
from tenure.errors import CampaignTimeout, TenureError
from tenure.handoff import (
    HandoffResult,
    Marker,
    OnFailure,
    check_handoff_args,
    hand_off,
    marker_key,
    side_name,
    taker,
)

if TYPE_CHECKING:
    from tenure.client import Client
    from tenure.leadership import Leadership

log = logging.getLogger("tenure")

REQUEST_SEGMENT = ".tenure-handoff-request"
POLL = 0.1
"""Seconds between reads of the marker while a request is pending."""


def request_election(election: str) -> str:
    """The side election carrying ``election``'s pending handoff request."""
    return side_name(REQUEST_SEGMENT, election)


class HandoffListener:
    """Serves handoff requests for one leadership, from a daemon thread, until the
    leadership ends or :meth:`stop`. ``recampaign=False`` when the owner campaigns
    again by itself after a handoff (the run loop): ``keep`` then only marks this
    candidate as the one the others let lead again. ``before_release`` is called
    before the leadership is given up for a request (see :func:`hand_off`)."""

    def __init__(self, lead: Leadership, *, recampaign: bool = True,
                 before_release: Callable[[], object] | None = None) -> None:
        self.lead = lead
        self.recampaign = recampaign
        self.before_release = before_release
        """Passed to :func:`tenure.handoff.hand_off` (``tenure run`` stops its command)."""
        self.results: list[HandoffResult[Leadership]] = []
        self._stop = Flag()
        self._seen = 0
        client: Any = lead._client
        self._election = client.election(lead.election)
        self._thread = threading.Thread(target=self._run, name="tenure-handoff-listener",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops listening (returns once the thread ended, unless called from it)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        store = self._election.client.store
        name = request_election(self.lead.election)
        # The observation ends when the leadership does or stop() is called: both are
        # Flags whose wakers set `watching` (a Flag, so observe's wait is woken too).
        watching = Flag()
        wakers = [self._stop.add_waker(watching.set)]
        ended = self.lead.ended
        if isinstance(ended, Flag):
            wakers.append(ended.add_waker(watching.set))
        else:  # a leadership of another kind: its plain Event is watched by a thread
            threading.Thread(target=self._stop_on_end, args=(watching,), daemon=True,
                             name="tenure-handoff-end").start()
        try:
            for request in observe(store, name, watching, None):
                if request is None or request.token <= self._seen:
                    continue
                self._seen = request.token
                self._serve(request.value)
                if self.lead.ended.is_set():
                    return
        except TenureError as exc:  # pragma: no cover - observe retries store errors
            log.warning("handoff listener in %s stopped: %s", self.lead.election, exc)
        finally:
            for unregister in wakers:
                unregister()
            watching.set()

    def _stop_on_end(self, watching: threading.Event) -> None:
        while not watching.is_set():
            if self.lead.ended.wait(0.2) or self._stop.is_set():
                watching.set()

    def _serve(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
            to, timeout = check_handoff_args(data.get("to"), data.get("timeout"),
                                             data.get("on_failure"))
            mode: OnFailure = "keep" if data["on_failure"] == "keep" else "resign"
            request = str(data["id"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring a malformed handoff request in %s: %s", self.lead.election,
                        exc)
            return
        if self.lead.ended.is_set():
            return
        try:
            answered = Marker.decode(self._election.client.store.read(
                marker_key(self.lead.election)))
        except TenureError as exc:
            log.warning("handoff request in %s not served: %s", self.lead.election, exc)
            return
        if answered is not None and answered.request == request:
            # Already answered, by an earlier leadership of this election (this one won
            # it again after a failed handoff, or took over in it): the requester keeps
            # the request pending until it has read that answer, and a second answer
            # could overwrite the first before it does.
            return
        try:
            outcome = hand_off(self.lead, self._election, to, timeout, mode, request,
                               recampaign=self.recampaign,
                               before_release=self.before_release)
        except TenureError as exc:
            log.warning("handoff request in %s failed: %s", self.lead.election, exc)
            return
        self.results.append(outcome)


def request_handoff(
    client: Client, election: str, to: str, timeout: float = 10.0,
    on_failure: str = "keep", answer_within: float | None = None,
) -> HandoffResult[None]:
    """Asks the current leader of ``election`` to hand off to ``to`` and waits for the
    outcome. ``answer_within`` (default: ``timeout``) bounds the wait for the leader to
    acknowledge; ``timeout`` then bounds the takeover. Never raises for a refused or
    failed handoff (the result says why, naming the candidate and the leader);
    ConfigError for bad arguments, StoreUnavailable if the store cannot be asked."""
    to, timeout = check_handoff_args(to, timeout, on_failure)
    started = time.monotonic()
    store = client.store
    key = marker_key(election)
    side = request_election(election)

    def failed(message: str) -> HandoffResult[None]:
        return HandoffResult(False, to, message, False, client.election(election).leader(),
                             None, time.monotonic() - started)

    leader = client.election(election).leader()
    if leader is None:
        return failed(f"election {election!r} has no leader to hand off from")
    if leader.candidate_id == to:
        return failed(f"candidate {to!r} already leads election {election!r} "
                      f"(token {leader.token})")
    waiting = [c.candidate_id for c in store.contenders(election)
               if c.candidate_id != leader.candidate_id]
    if to not in waiting:
        return failed(f"candidate {to!r} is not a live contender of election {election!r} "
                      f"(waiting: {', '.join(waiting) or 'none'})")
    request = uuid.uuid4().hex
    value = json.dumps({"id": request, "to": to, "timeout": timeout,
                        "on_failure": on_failure}).encode()
    ack = timeout if answer_within is None else answer_within
    try:
        pending = client.election(side).campaign(value, timeout=ack)
    except CampaignTimeout:
        return failed(f"another handoff request for election {election!r} is pending; "
                      "try again when it is done")
    try:
        return _follow(client, election, key, request, to, leader, ack, timeout, started)
    finally:
        pending.resign()


def _follow(
    client: Client, election: str, key: str, request: str, to: str, leader: Any,
    ack: float, timeout: float, started: float,
) -> HandoffResult[None]:
    store = client.store
    pause = threading.Event()
    acked_by: float | None = None
    end = time.monotonic() + ack
    while True:
        marker = Marker.decode(store.read(key))
        now = time.monotonic()
        if marker is not None and marker.request == request:
            if marker.refused:
                return HandoffResult(False, to, f"the leader {marker.by!r} refused: "
                                     f"{marker.refused}", False, client.election(election)
                                     .leader(), None, now - started, marker.token)
            if acked_by is None:
                acked_by = now
                end = now + timeout + client.ttl * 2
            if marker.done:
                current = taker(store, election, marker)
                ok = marker.taken_by == to
                message = (f"handed off election {election!r} to {to!r}" if ok else
                           f"candidate {to!r} did not take over election {election!r} "
                           f"within {timeout:g} s; {marker.taken_by!r} leads now")
                return HandoffResult(ok, to, message, True, current, None, now - started,
                                     marker.token)
        if now >= end:
            if acked_by is None:
                return HandoffResult(
                    False, to, f"the leader {leader.candidate_id!r} (token {leader.token}) "
                    f"did not answer the handoff request within {ack:g} s; only leaders "
                    "that accept handoff requests do (Election.run(..., "
                    "accept_handoff_requests=True), a HandoffListener, tenure run "
                    "--accept-handoff)", False,
                    client.election(election).leader(), None, now - started)
            return HandoffResult(False, to, f"candidate {to!r} did not take over election "
                                 f"{election!r} within {timeout:g} s (nobody took the "
                                 "election)", True, client.election(election).leader(),
                                 None, now - started)
        pause.wait(POLL)
