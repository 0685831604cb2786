"""The election contract for asyncio programs, without blocking the event loop.

    from tenure import aio
    async with await aio.connect("sqlite:///tmp/demo.db", ttl=5) as client:
        async with client.election("jobs/nightly").campaign(value=b"10.0.0.7") as lead:
            await do_work(fencing_token=lead.token)

The same contract, guarantees and exceptions as :mod:`tenure.client` (this module wraps
it): every blocking call of the sync core runs in a thread, so the loop keeps serving.
``campaign`` is awaitable and cancellable: cancelling the awaiting task sets the cancel
event the core's campaign accepts, waits (shielded) until the core has removed the
queue entry, and only then lets ``CancelledError`` propagate -- so a cancelled campaign
never leaves an entry behind, and one that won in the same instant is resigned.
``observe`` is an async iterator fed by one thread per iteration. What this module does
NOT do: make the core's renewals asyncio tasks -- the session keeper's threads renew
and enforce the validity deadline even while the loop is blocked, which is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

import tenure
from tenure.client import Client as SyncClient
from tenure.client import Election as SyncElection
from tenure.client import Leadership as SyncLeadership
from tenure.errors import CampaignCancelled
from tenure.handoff import HandoffResult
from tenure.leadership import State
from tenure.store import LeaderInfo

T = TypeVar("T")
AsyncLostCallback = Callable[["Leadership", str], Any]


async def _in_thread(function: Callable[[], T], name: str = "tenure-aio",
                     workers: _Workers | None = None) -> T:
    """Runs a (possibly long) blocking call in a thread of its own and awaits it.

    Not the loop's default executor: campaigns and observers may block for hours and
    must not starve other ``to_thread`` users. With ``workers`` (a client's), the call
    runs on one of that client's long-lived threads, started only when none is free;
    without, on a new daemon thread. Cancelling the awaiting task drops the outcome
    (use :func:`_launch` with ``keep_late`` to collect it)."""
    waiter, _ = _launch(function, name, workers)
    return await waiter


def _launch(function: Callable[[], T], name: str, workers: _Workers | None,
            keep_late: bool = False) -> tuple[asyncio.Future[T], asyncio.Future[T] | None]:
    """Starts ``function()`` on a thread now (not at the loop's next turn) and returns
    ``(waiter, late)``: the thread's outcome is handed to the loop in ONE callback that
    settles ``waiter`` -- await it directly (no task, no shield: each of those cost a
    turn of the loop between the thread's answer and the awaiting code). If ``waiter``
    was cancelled first (the awaiting task was), the outcome goes to ``late`` instead
    (with ``keep_late``; else it is dropped), which the canceller awaits to undo it."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    late: asyncio.Future[T] | None = loop.create_future() if keep_late else None

    def settle(result: T | None, error: BaseException | None) -> None:
        target = late if waiter.done() else waiter  # done before: it was cancelled
        if target is None or target.done():
            return
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(result)  # type: ignore[arg-type]

    def run() -> Callable[[], None]:
        """Calls ``function``; returns what hands its outcome to the loop."""
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting task
            error = exc  # ``exc`` is unbound once the except block ends
            return lambda: _post(loop, settle, None, error)
        return lambda: _post(loop, settle, result, None)

    if workers is None:
        threading.Thread(target=lambda: run()(), name=name, daemon=True).start()
    else:
        workers.submit(run, name)
    return waiter, late


def _post(loop: asyncio.AbstractEventLoop, settle: Callable[[T | None, BaseException | None],
          None], result: T | None, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # loop closed
        loop.call_soon_threadsafe(settle, result, error)


Job = tuple[Callable[[], Callable[[], None]], str]


class _Workers:
    """One client's threads for its blocking calls that may last (campaigns, handoffs).

    A call runs on an idle thread of this client, or on a new one when every thread is
    busy: no call ever waits for another to finish, as with a thread per call, but a
    client that campaigns again and again reuses one thread instead of starting one
    (and, on SQLite, opening that thread's database connection) per campaign. A thread
    idle for ``idle`` seconds ends unless it is the last idle one (a client keeps one
    for its next campaign), and :meth:`close` ends the idle ones at once (a busy one
    ends after its call). What it does not do: bound the number of threads
    (as many as calls running at once), or interrupt a call (campaigns stop on their
    cancel event or the client's close, as before)."""

    def __init__(self, idle: float = 60.0) -> None:
        self.idle_timeout = idle
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Job | None]] = []
        self._closed = False
        self.started = 0
        """Threads started so far (reuse shows as a small count)."""
        self.threads: set[threading.Thread] = set()
        """The threads alive now (each leaves the set as it ends)."""

    def submit(self, call: Callable[[], Callable[[], None]], name: str) -> None:
        """Runs ``call()`` (which must not raise) on an idle thread or a new one, then
        the delivery it returns -- after the thread is idle again, so that a caller
        that submits the next call as soon as it hears of this one reuses it."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                self.started += 1
        if inbox is not None:
            inbox.put((call, name))
            return
        thread = threading.Thread(target=self._serve, args=(call, name), name=name,
                                  daemon=True)
        with self._lock:
            self.threads.add(thread)
        thread.start()

    def close(self) -> None:
        """Ends the idle threads; busy ones end after their call. Calls submitted
        later still run (each on a thread that ends after it)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)

    def _serve(self, call: Callable[[], Callable[[], None]], name: str) -> None:
        try:
            self._work(call, name)
        finally:
            with self._lock:
                self.threads.discard(threading.current_thread())

    def _work(self, call: Callable[[], Callable[[], None]], name: str) -> None:
        inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        job: Job | None = (call, name)
        while job is not None:
            threading.current_thread().name = job[1]
            deliver = job[0]()
            job = None  # drops the call's references while idle
            with self._lock:
                closed = self._closed
                if not closed:
                    self._idle.append(inbox)
            deliver()
            del deliver
            if closed:
                return
            job = self._next(inbox)  # None: end

    def _next(self, inbox: queue.SimpleQueue[Job | None]) -> Job | None:
        """The next call for this idle thread, or None when it should end."""
        while True:
            try:
                return inbox.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    taken = inbox not in self._idle
                    if not taken and len(self._idle) > 1:  # the last idle one stays
                        self._idle.remove(inbox)
                        return None
                if taken:
                    return inbox.get()  # a submit took this thread in the same instant


async def connect(
    url: str | None = None,
    *,
    ttl: float | None = None,
    drift: float | None = None,
    candidate_id: str | None = None,
    config_file: str | None = None,
) -> Client:
    """Like :func:`tenure.connect` (same arguments, same errors), awaitable."""
    sync = await asyncio.to_thread(
        tenure.connect, url, ttl=ttl, drift=drift, candidate_id=candidate_id,
        config_file=config_file,
    )
    return Client(sync)


async def _outlasting(task: asyncio.Future[T]) -> T:
    """Awaits ``task`` to its end even if the awaiting task is cancelled again meanwhile
    (a second cancel must not leave a won leadership or an entry behind). For callers
    already handling a cancel, which they raise again afterwards."""
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()  # raises the task's own cancel or error


class Client:
    """An asyncio view of one :class:`tenure.Client` (one store session).

        client = await aio.connect(url)
        election = client.election("jobs/nightly")
        await client.close()
    """

    def __init__(self, sync: SyncClient) -> None:
        self.sync = sync
        self._observers: dict[threading.Thread, threading.Event] = {}
        self._workers = _Workers()

    @property
    def candidate_id(self) -> str:
        """This client's candidate id."""
        return self.sync.candidate_id

    @property
    def ttl(self) -> float:
        """The session TTL in seconds."""
        return self.sync.ttl

    @property
    def backend(self) -> str:
        """The backend URL without secrets."""
        return self.sync.backend

    def election(self, name: str) -> Election:
        """The election called ``name`` (InvalidNameError at once if bad)."""
        return Election(self, self.sync.election(name))

    async def read(self, key: str) -> bytes | None:
        """Reads a key written by a guarded write."""
        return await asyncio.to_thread(self.sync.read, key)

    async def close(self) -> None:
        """Stops this client's observers, resigns everything and ends the session.
        Idempotent."""
        observers = list(self._observers.items())
        for _, stop in observers:
            stop.set()

        def close() -> None:
            for thread, _ in observers:
                thread.join()
            self.sync.close()

        try:
            await asyncio.to_thread(close)
        finally:
            self._workers.close()

    async def run_blocking(self, function: Callable[[], T], name: str = "tenure-aio") -> T:
        """Runs the blocking ``function()`` on one of this client's own threads (the ones
        its campaigns and handoffs run on; a new one when all are busy) and returns what
        it returns. For calls that may block long or that should reuse what a thread of
        this client already set up (SQLite opens a connection per thread)."""
        return await _in_thread(function, name, self._workers)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Election:
    """One named election: campaign, leader, observe, resign -- all awaitable.

        election = client.election("jobs/nightly")
        async with election.campaign(timeout=30) as lead: ...
        async for leader in election.observe(): ...
    """

    def __init__(self, client: Client, sync: SyncElection) -> None:
        self.client = client
        self.sync = sync
        self.name = sync.name

    def campaign(
        self, value: bytes | str = b"", *, timeout: float | None = None,
        on_lost: AsyncLostCallback | None = None, priority: int | None = None,
    ) -> Campaign:
        """Campaigns; ``await`` it for a :class:`Leadership`, or use it with
        ``async with`` (resigns on exit). Raises what the sync campaign raises
        (CampaignTimeout, UsageError, ...). Cancelling the awaiting task removes the
        queue entry before CancelledError propagates. ``priority``: as in
        :meth:`tenure.Election.campaign`."""
        return Campaign(self, value, timeout, on_lost, priority)

    async def leader(self) -> LeaderInfo | None:
        """The current leader by a linearizable read, or None."""
        return await asyncio.to_thread(self.sync.leader)

    async def resign(self) -> None:
        """Resigns this client's leadership here, if any."""
        await asyncio.to_thread(self.sync.resign)

    async def observe(self, *, timeout: float | None = None) -> AsyncIterator[LeaderInfo | None]:
        """Yields the current leader (or None), then each change, in token order, like
        :meth:`tenure.Election.observe`. Stops after ``timeout`` seconds, or when the
        consumer stops iterating (``break``, ``aclose()`` or task cancellation)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bool, LeaderInfo | None]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: tuple[bool, LeaderInfo | None]) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            try:
                for state in self.sync.observe(stop=stop, timeout=timeout):
                    put((False, state))
            finally:
                put((True, None))
                observers.pop(threading.current_thread(), None)

        observers = self.client._observers
        thread = threading.Thread(target=pump, name="tenure-aio-observe", daemon=True)
        observers[thread] = stop
        thread.start()
        try:
            while True:
                done, state = await queue.get()
                if done:
                    return
                yield state
        finally:
            stop.set()  # the thread ends within a slice; close() waits for it


    async def run(
        self,
        work: Callable[[Leadership], Awaitable[object]],
        *,
        value: bytes | str = b"",
        on_started: Callable[[Leadership], object] | None = None,
        on_stopped: Callable[[Leadership, str], object] | None = None,
    ) -> None:
        """Leads forever, like :meth:`tenure.Election.run`: campaigns, runs
        ``await work(leadership)`` as a task that is CANCELLED the moment the leadership
        is lost (deadline passed, session ended, write refused), calls ``on_stopped``
        (plain or async) exactly once per leadership, and campaigns again after a loss
        with back-off. Returns when ``work`` returns (the leadership is resigned first);
        re-raises what ``work`` raises (after resigning); cancelling the task running
        ``run`` resigns and calls ``on_stopped`` before CancelledError propagates."""
        from tenure.runloop import BACKOFF_FIRST, BACKOFF_MAX

        backoff = BACKOFF_FIRST
        while True:
            lead = await self.campaign(value)
            if on_started is not None:
                await _maybe_await(on_started(lead))
            worker = asyncio.ensure_future(work(lead))
            ended = asyncio.ensure_future(lead.wait_lost())
            try:
                await asyncio.wait({worker, ended}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                worker.cancel()
                ended.cancel()
                await lead.resign()
                await _stopped(on_stopped, lead)
                raise
            if worker.done():
                ended.cancel()
                await lead.resign()
                await _stopped(on_stopped, lead)
                worker.result()  # re-raises what work raised
                return
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
            await _stopped(on_stopped, lead)
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


async def _stopped(
    on_stopped: Callable[[Leadership, str], object] | None, lead: Leadership
) -> None:
    if on_stopped is None:
        return
    try:
        await _maybe_await(on_stopped(lead, lead.lost_reason))
    except Exception:
        tenure.client.log.exception("on_stopped callback failed")


class Campaign:
    """A pending campaign: awaitable (returns the Leadership) and an async context
    manager (resigns on exit).

        lead = await election.campaign(timeout=10)
        async with election.campaign() as lead: ...
    """

    def __init__(
        self, election: Election, value: bytes | str, timeout: float | None,
        on_lost: AsyncLostCallback | None, priority: int | None = None,
    ) -> None:
        self._election = election
        self._value = value
        self._timeout = timeout
        self._on_lost = on_lost
        self._priority = priority
        self._leadership: Leadership | None = None

    def __await__(self) -> Generator[Any, None, Leadership]:
        return self._run().__await__()

    async def _run(self) -> Leadership:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        holder: list[Leadership] = []

        def lost(sync: SyncLeadership, reason: str) -> None:
            if holder:
                holder[0]._fire_lost(reason)

        def campaign() -> SyncLeadership:
            return self._election.sync.campaign(
                self._value, timeout=self._timeout, cancel=cancel, on_lost=lost,
                priority=self._priority,
            )

        # Submitted at once and awaited with no task or shield in between: each of those
        # cost a turn of the loop on the way to the thread and back.
        waiter, late = _launch(campaign, "tenure-aio-campaign",
                               self._election.client._workers, keep_late=True)
        assert late is not None
        try:
            sync = await waiter
        except asyncio.CancelledError:
            cancel.set()
            # ``waiter`` holds the outcome if it came before the cancel took effect
            outcome = waiter if waiter.done() and not waiter.cancelled() else late
            with contextlib.suppress(CampaignCancelled, Exception):
                # the core removes the entry within WAIT_SLICE
                won = await _outlasting(outcome)
                await _outlasting(asyncio.ensure_future(asyncio.to_thread(won.resign)))
            raise
        leadership = Leadership(sync, loop, self._on_lost)
        holder.append(leadership)
        if sync.lost:
            leadership._fire_lost(sync.lost_reason)
        return leadership

    async def __aenter__(self) -> Leadership:
        self._leadership = await self._run()
        return self._leadership

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leadership is not None:
            await self._leadership.resign()


class Leadership:
    """A won campaign (wraps :class:`tenure.Leadership`): token, deadline, loss.

        async with election.campaign() as lead:
            lead.ensure()                # no I/O: checks the monotonic deadline
            await lead.proclaim(b"new address")

    ``on_lost`` callbacks run in the event loop (coroutine functions are scheduled as
    tasks), once, on loss -- not on resign. :meth:`wait_lost` awaits the end (loss or
    resign); :attr:`state` tells which."""

    def __init__(
        self, sync: SyncLeadership, loop: asyncio.AbstractEventLoop,
        on_lost: AsyncLostCallback | None = None,
    ) -> None:
        self.sync = sync
        self._loop = loop
        self._ended = asyncio.Event()
        self._callbacks: list[AsyncLostCallback] = [on_lost] if on_lost else []
        self._fired = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<aio {self.sync!r}>"

    @property
    def election(self) -> str:
        """The election name."""
        return self.sync.election

    @property
    def candidate_id(self) -> str:
        """This candidate's id."""
        return self.sync.candidate_id

    @property
    def token(self) -> int:
        """The fencing token."""
        return self.sync.token

    @property
    def value(self) -> bytes:
        """This leader's value."""
        return self.sync.value

    @property
    def deadline(self) -> float:
        """Monotonic time after which this leadership is void."""
        return self.sync.deadline

    @property
    def state(self) -> State:
        """HELD, LOST or RESIGNED (:class:`tenure.leadership.State`)."""
        return self.sync.state

    @property
    def lost(self) -> bool:
        """True once lost; False while held and after a plain resign."""
        return self.sync.lost

    @property
    def lost_reason(self) -> str:
        """Why leadership ended ("" while valid; "resigned" after a resign)."""
        return self.sync.lost_reason

    def remaining(self) -> float:
        """Seconds of validity left (0 once ended)."""
        return self.sync.remaining()

    def ensure(self) -> None:
        """Raises LeadershipLost once lost, NotLeader after a resign (no I/O; safe to
        call in the loop)."""
        self.sync.ensure()

    def on_lost(self, callback: AsyncLostCallback) -> None:
        """Registers ``callback(leadership, reason)`` (plain or async), run in the loop
        once on loss (at once if already lost). Not called on resign."""
        self._callbacks.append(callback)
        if self._fired:
            self._loop.call_soon(self._call, callback, self.sync.lost_reason)

    async def wait_lost(self, timeout: float | None = None) -> bool:
        """Waits until lost or resigned (True) or ``timeout`` passes (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.sync.state is State.HELD:
            wait = max(0.0, self.sync.deadline - time.monotonic()) + 0.001
            if end is not None:
                wait = min(wait, end - time.monotonic())
                if wait <= 0:
                    return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), timeout=wait)
        return True

    async def resign(self) -> None:
        """Releases leadership at once; a no-op if already ended."""
        await asyncio.to_thread(self.sync.resign)
        self._ended.set()

    async def handoff(
        self, to: str, *, timeout: float = 10.0, on_failure: str = "keep",
    ) -> HandoffResult[Leadership]:
        """Hands leadership to the waiting candidate ``to``, like
        :meth:`tenure.Leadership.handoff` (same rules, same result); when this
        candidate leads again after a failed handoff with ``keep``,
        ``result.leadership`` is a new :class:`Leadership` of this module."""
        sync = await _in_thread(
            lambda: self.sync.handoff(to, timeout=timeout, on_failure=on_failure),
            "tenure-aio-handoff")
        if sync.released:
            self._ended.set()
        leadership: Leadership | None = None
        if sync.leadership is self.sync:
            leadership = self
        elif sync.leadership is not None:
            leadership = Leadership(sync.leadership, self._loop)
            sync.leadership.on_lost(lambda _sync, reason: leadership._fire_lost(reason))
        return HandoffResult(sync.ok, sync.candidate, sync.message, sync.released,
                             sync.leader, leadership, sync.elapsed, sync.token)

    @property
    def preferred(self) -> threading.Event:
        """Set while a higher-priority candidate waits (see
        :attr:`tenure.Leadership.preferred`; watched once :meth:`watch_preferred` ran)."""
        return self.sync.preferred

    def watch_preferred(self) -> None:
        """Starts watching for higher-priority waiters (sets :attr:`preferred`)."""
        self.sync.on_preferred(lambda _lead, _contender: None)

    async def yield_to_preferred(
        self, *, timeout: float = 10.0, on_failure: str = "keep",
    ) -> HandoffResult[Leadership] | None:
        """Hands off to the highest-priority waiter above this leader, if any (None
        otherwise), like :meth:`tenure.Leadership.yield_to_preferred`."""
        from tenure.priority import best_waiter, with_priorities

        best = await asyncio.to_thread(
            lambda: best_waiter(with_priorities(self.sync._client.store, self.election),
                                self.candidate_id, self.sync.priority))
        if best is None:
            return None
        return await self.handoff(best.candidate_id, timeout=timeout, on_failure=on_failure)

    async def proclaim(self, value: bytes | str) -> None:
        """Changes this leader's value without giving up leadership."""
        await asyncio.to_thread(self.sync.proclaim, value)

    async def guarded_write(self, key: str, value: bytes | str) -> None:
        """A store write committed only while this candidate leads (NotLeader if not)."""
        await asyncio.to_thread(self.sync.guarded_write, key, value)

    async def __aenter__(self) -> Leadership:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.resign()

    def _fire_lost(self, reason: str) -> None:
        """Called from a tenure thread (or the loop): hands the loss to the loop."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._lost_in_loop, reason)

    def _lost_in_loop(self, reason: str) -> None:
        self._ended.set()
        if self._fired:
            return
        self._fired = True
        for callback in self._callbacks:
            self._call(callback, reason)

    def _call(self, callback: AsyncLostCallback, reason: str) -> None:
        try:
            result = callback(self, reason)
        except Exception:
            tenure.client.log.exception("on_lost callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_logged(result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        tenure.client.log.exception("on_lost callback failed")
