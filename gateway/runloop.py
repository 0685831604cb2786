"""Lead forever: campaign, work while leading, stop on loss, campaign again.

    def work(lead: tenure.Leadership) -> None:
        while not lead.ended.wait(1.0):          # set the moment leadership ends
            do_one_step(fencing_token=lead.token)

    election.run(work, on_stopped=lambda lead, why: log.info("stopped: %s", why))

The shape users know from client-go's ``RunOrDie`` and kazoo's ``Election.run``, with
tenure's guarantees: ``work(leadership)`` runs in the caller's thread each time this
candidate wins; ``leadership.ended`` (a :class:`threading.Event`) is set the moment the
leadership is lost -- its validity deadline passed, the session ended, a write was
refused -- or the loop is stopped. ``on_stopped(leadership, reason)`` is called exactly
once per leadership, on every end. After a loss the loop campaigns again with
exponential back-off; when ``work`` returns by itself the leadership is resigned and
:meth:`RunLoop.run` returns; when ``work`` raises, the leadership is resigned,
``on_stopped`` is called and the exception propagates. ``stop()`` (or ``stop`` set,
:meth:`Client.close`, KeyboardInterrupt) ends the loop cleanly, resigning first.
With ``accept_handoff_requests=True`` each leadership serves ``tenure handoff``
requests (:mod:`tenure.handoff_requests`): the handoff ends the leadership
(``leadership.ended`` is set, ``on_stopped`` is called with "handed off to ...") and
the loop queues again at once, without back-off. ``priority=N`` is declared with
each campaign; ``on_preferred`` is told when a higher-priority candidate waits; with
``prefer_priority=True`` the loop also hands off to it -- never mid-work: ``work``
returns at a safe point it chooses once ``leadership.preferred`` is set, the loop then
hands off (:meth:`Leadership.yield_to_preferred`) and queues again instead of
returning. Default: first come, first served.

What it does NOT do: interrupt ``work``. Python cannot stop a thread; ``work`` must
watch ``leadership.ended`` (or call ``leadership.ensure()``) and return. Use
``tenure run`` to have a separate process killed at the deadline instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from tenure.cancel import Flag
from tenure.errors import CampaignCancelled, CampaignTimeout, TenureError
from tenure.leadership import Leadership, PreferredCallback, State
from tenure.store import LeaderInfo

log = logging.getLogger("tenure")

Work = Callable[[Leadership], object]
StoppedCallback = Callable[[Leadership, str], None]
NewLeaderCallback = Callable[[LeaderInfo | None], None]


class Stoppable(Protocol):
    """An observer that can be stopped (:class:`tenure.client.Observer`)."""

    def stop(self) -> None: ...


class Campaigner(Protocol):
    """What the loop needs of an election (:class:`tenure.client.Election` is one); a
    protocol, so this module does not import the client's."""

    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def ttl(self) -> float: ...
    def campaign(self, value: bytes | str = b"", *,
                 cancel: threading.Event | None = None,
                 priority: int | None = None) -> Leadership: ...
    def on_change(self, callback: NewLeaderCallback) -> Stoppable: ...


BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
"""Pauses (seconds) before campaigning again after a loss; reset by a leadership that
lasted longer than the TTL."""


class RunLoop:
    """One candidate leading an election for as long as the loop runs.

    :meth:`run` blocks; :meth:`stop` may be called from any thread or a signal handler
    and makes :meth:`run` return after resigning (the resign runs in a stopper
    thread: see :meth:`stop`)."""

    def __init__(
        self,
        election: Campaigner,
        work: Work,
        *,
        value: bytes | str = b"",
        on_started: Callable[[Leadership], None] | None = None,
        on_stopped: StoppedCallback | None = None,
        on_new_leader: NewLeaderCallback | None = None,
        accept_handoff_requests: bool = False,
        priority: int | None = None,
        prefer_priority: bool = False,
        on_preferred: PreferredCallback | None = None,
    ) -> None:
        self.election = election
        self.accept_handoff_requests = accept_handoff_requests
        self.priority = priority
        self.prefer_priority = prefer_priority
        self.on_preferred = on_preferred
        self.yielded = 0
        """Handoffs to a preferred candidate made by this loop."""
        self.work = work
        self.value = value
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.on_new_leader = on_new_leader
        self._stop = Flag()  # wakes the campaign's wait when stopped (tenure.cancel)
        self._lock = threading.RLock()  # reentrant: stop() may run in a signal handler
        self._stops_done = threading.Condition(self._lock)
        self._stopping = 0
        self._stop_requested = False
        """stop() calls still resigning (run() returns only once there are none)."""
        self._current: Leadership | None = None
        self.leaderships = 0
        """How many times this loop has led (for tests and metrics)."""

    def stop(self) -> None:
        """Ends the loop: a running campaign is cancelled, a held leadership resigned
        (its entry withdrawn) before :meth:`run` returns. The resign runs in a thread of
        its own, never in the caller: a signal handler (it runs in the main thread,
        between two bytecodes of whatever that thread was doing) must not take the
        client's or the leadership's locks, which the interrupted code may hold. Called
        from any other thread, this returns once that resign finished; called from the
        main thread (where signal handlers run) it returns at once -- :meth:`run`
        still returns only after the resign."""
        stopper = self._request_stop()
        if threading.current_thread() is not threading.main_thread():
            stopper.join()

    def _request_stop(self) -> threading.Thread:
        """Starts the thread that stops the loop (see :meth:`stop`); safe in a signal
        handler: it takes only this loop's lock (an RLock, which the interrupted main
        thread may hold) and starts a thread."""
        with self._lock:
            self._stop_requested = True
            self._stopping += 1
        stopper = threading.Thread(target=self._stop_now, name="tenure-run-stop",
                                   daemon=True)
        stopper.start()
        return stopper

    def _stop_now(self) -> None:
        try:
            self._stop.set()
            with self._lock:
                current = self._current
            if current is not None:
                current.end_resigned("the run loop was stopped")
        finally:
            with self._lock:
                self._stopping -= 1
                self._stops_done.notify_all()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop_requested or self._stop.is_set()

    def run(self) -> None:
        """Leads until stopped, ``work`` returns, or ``work`` raises (see the module).
        Stopped from another thread, it returns only once that :meth:`stop` resigned:
        the leadership's ``ended`` is set before its entry is withdrawn, and ``work``
        returning on it must not let the caller go on (close the client, exit) with
        the entry still in the store."""
        observer = self._observe()
        backoff = BACKOFF_FIRST
        try:
            while not self._stop.is_set() and not self.election.closed:
                try:
                    lead = self.election.campaign(self.value, cancel=self._stop,
                                                  priority=self.priority)
                except CampaignCancelled:
                    return
                except CampaignTimeout:  # pragma: no cover - no timeout is given
                    continue
                except TenureError:
                    if self.election.closed:  # Client.close from another thread
                        return
                    raise
                if self._lead(lead):
                    return
                if lead.handed_off_to is not None:
                    continue  # queue again at once (a failed handoff with keep)
                if lead.state is State.LOST and time.monotonic() - lead.elected_at > (
                        self.election.ttl):
                    backoff = BACKOFF_FIRST
                log.info("run loop in %s: campaigning again in %.2f s", self.election.name,
                         backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(BACKOFF_MAX, backoff * 2)
        finally:
            if observer is not None:
                observer.stop()
            with self._lock:
                self._stops_done.wait_for(lambda: self._stopping == 0)

    def _lead(self, lead: Leadership) -> bool:
        """Runs ``work`` for one leadership; True when the loop should return."""
        with self._lock:
            self._current = lead
        if self._stop.is_set():
            lead.end_resigned("the run loop was stopped")
        self.leaderships += 1
        listener = None
        if self.accept_handoff_requests:
            from tenure.handoff_requests import HandoffListener

            listener = HandoffListener(lead, recampaign=False)
        if self.on_preferred is not None:
            lead.on_preferred(self.on_preferred)
        elif self.prefer_priority:
            lead.on_preferred(lambda _lead, _contender: None)
        try:
            if self.on_started is not None:
                self.on_started(lead)
            self.work(lead)
        except BaseException as exc:
            lead.end_resigned(f"work raised {exc.__class__.__name__}")
            self._stopped(lead)
            raise
        finally:
            with self._lock:
                self._current = None
            if listener is not None:
                listener.stop()
        if (self.prefer_priority and lead.state is State.HELD and lead.preferred.is_set()
                and not self._stop.is_set()):
            # The safe point: work returned while a preferred candidate waits.
            result = lead.yield_to_preferred(on_failure="keep", recampaign=False)
            if result is not None:
                self.yielded += 1
                log.info("run loop in %s: %s", self.election.name, result.message)
        done = lead.state is State.HELD
        if done:
            lead.end_resigned("work returned")
        self._stopped(lead)
        return done or self._stop.is_set()

    def _stopped(self, lead: Leadership) -> None:
        if self.on_stopped is None:
            return
        try:
            self.on_stopped(lead, lead.lost_reason)
        except Exception:
            log.exception("on_stopped callback failed")

    def _observe(self) -> Stoppable | None:
        if self.on_new_leader is None:
            return None
        return self.election.on_change(self.on_new_leader)


def run(
    election: Campaigner,
    work: Work,
    *,
    value: bytes | str = b"",
    on_started: Callable[[Leadership], None] | None = None,
    on_stopped: StoppedCallback | None = None,
    on_new_leader: NewLeaderCallback | None = None,
    stop: threading.Event | None = None,
    accept_handoff_requests: bool = False,
    priority: int | None = None,
    prefer_priority: bool = False,
    on_preferred: PreferredCallback | None = None,
) -> None:
    """Builds a :class:`RunLoop` and runs it; ``stop``, when set, stops it: at once if it
    is a :class:`tenure.cancel.Flag` (its waker starts the stop), else within 0.1 s (a
    helper thread checks it: :class:`threading.Event` has no callback)."""
    loop = RunLoop(election, work, value=value, on_started=on_started,
                   on_stopped=on_stopped, on_new_leader=on_new_leader,
                   accept_handoff_requests=accept_handoff_requests, priority=priority,
                   prefer_priority=prefer_priority, on_preferred=on_preferred)
    finished = threading.Event()
    unregister: Callable[[], None] | None = None
    if isinstance(stop, Flag):
        # In a thread of its own: stop() resigns (store I/O), and a waker must be quick.
        unregister = stop.add_waker(lambda: threading.Thread(
            target=loop.stop, name="tenure-run-stop", daemon=True).start())
    elif stop is not None:
        def relay() -> None:
            while not finished.is_set():
                if stop.wait(0.1):
                    loop.stop()
                    return
        threading.Thread(target=relay, name="tenure-run-stop", daemon=True).start()
    try:
        loop.run()
    except KeyboardInterrupt:
        loop._request_stop().join()  # resigned before the interrupt goes on
        raise
    finally:
        finished.set()
        if unregister is not None:
            unregister()

