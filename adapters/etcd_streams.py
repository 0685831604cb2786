"""The etcd client's two long-lived gRPC streams -- watches and lease keepalives -- on
grpc.aio channels driven by ONE asyncio thread per connection (:class:`StreamLoop`).

Why not pyetcd's ``Watcher`` and the sync API for these streams: on an idle waiting
candidate (measured per thread, /proc/<pid>/task/*/schedstat over 30 s, TTL 2 s) the
sync streams cost about a third of its CPU: the thread blocked on a sync response
iterator wakes every 0.1 s (grpc._common.wait polls with MAXIMUM_WAIT_TIMEOUT; pyetcd's
watch thread, 10 wake-ups/s), every open sync stream keeps gRPC's channel-spin thread
polling its completion queue every 0.2 s (5+/s), and each stream has a request-consumer
thread. grpc.aio's poller thread blocks in C until an event arrives and the loop thread
sleeps in epoll with no timer: an idle watch wakes nothing. Unary calls stay on
pyetcd's sync channel (they poll nothing while idle). The cost: a second connection to
the member (its HTTP/2 keepalive ping every 10 s) and a thread hop per keepalive.

Both classes are driven from other threads through the loop; their callbacks run on
the loop thread and must not block.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from pyetcd import etcdrpc, events
from pyetcd.exceptions import RevisionCompactedError, WatchTimedOut
from pyetcd.watch import WatchResponse

log = logging.getLogger("tenure")

R = TypeVar("R")

_CLOSE_WAIT = 2.0
"""Seconds :meth:`StreamLoop.close` waits for the channels to close."""


class StreamLoop:
    """One asyncio event loop on a daemon thread, with one grpc.aio channel per member
    target made on first use. Thread-safe."""

    def __init__(self, credentials: grpc.ChannelCredentials | None,
                 options: Sequence[tuple[str, Any]]) -> None:
        self._credentials = credentials
        self._options = list(options)
        self._channels: dict[str, Any] = {}  # loop thread only
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="tenure-etcd-streams")
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def submit(self, coroutine: Awaitable[R]) -> concurrent.futures.Future[R]:
        """Runs ``coroutine`` on the loop; raises RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the etcd stream loop is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    def call_soon(self, function: Callable[..., object], *args: object) -> None:
        """Calls ``function(*args)`` on the loop thread (nothing once closed)."""
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            self._loop.call_soon_threadsafe(function, *args)

    def channel(self, target: str) -> Any:
        """The aio channel to ``target`` (``host:port``). Loop thread only."""
        channel = self._channels.get(target)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(target, options=self._options)
            else:
                channel = grpc.aio.secure_channel(target, self._credentials,
                                                  options=self._options)
            self._channels[target] = channel
        return channel

    async def _shutdown(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close()  # cancels the calls on it
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    def close(self) -> None:
        """Closes every channel (ending their streams) and stops the thread. Idempotent."""
        if self._closed:
            return
        try:
            done = self.submit(self._shutdown())
        except RuntimeError:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            done.result(_CLOSE_WAIT)
        self.call_soon(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(_CLOSE_WAIT)


async def _requests(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """A stream's requests: what is put in ``queue`` until None (half-closes)."""
    while True:
        request = await queue.get()
        if request is None:
            return
        yield request


def _safe(callback: Callable[[object], None], argument: object) -> None:
    try:
        callback(argument)
    except Exception:
        log.exception("etcd watch callback failed")


class WatchStream:
    """ONE Watch stream to one member carrying many watches: the interface of pyetcd's
    ``Watcher`` that :class:`~tenure.adapters.etcd_connection.EtcdConnection` uses.

    A watch's callback gets a pyetcd ``WatchResponse`` per response with events (or a
    progress notification), and once at its end: the stream's ``grpc.RpcError`` or None
    when the stream ended, a ``RevisionCompactedError`` when etcd compacted its start,
    None when etcd cancelled it. Once :attr:`ended`, the stream takes no more watches
    (a new stream is made)."""

    def __init__(self, loop: StreamLoop, target: str, metadata: Sequence[tuple[str, str]],
                 timeout: float) -> None:
        self._loop = loop
        self._target = target
        self._metadata = tuple(metadata)
        self._timeout = timeout
        self.ended = False
        """The stream ended (error, its end, or :meth:`close`): make a new one."""
        self._error: BaseException | None = None
        # loop thread only:
        self._queue: asyncio.Queue[Any] | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly
        self._callbacks: dict[int, Callable[[object], None]] = {}
        self._pending: collections.deque[
            tuple[asyncio.Future[int], Callable[[object], None]]] = collections.deque()

    def add_callback(self, key: bytes, callback: Callable[[object], None], *,
                     range_end: bytes | None = None, start_revision: int | None = None,
                     filters: list[Any] | None = None) -> int:
        """Creates a watch and returns its id once etcd confirmed it (within the
        timeout: else WatchTimedOut). Raises RevisionCompactedError, or the stream's
        grpc.RpcError if it ended."""
        create = etcdrpc.WatchCreateRequest(key=key)
        if range_end is not None:
            create.range_end = range_end
        if start_revision is not None:
            create.start_revision = start_revision
        if filters:
            create.filters.extend(filters)
        try:
            future = self._loop.submit(self._create(
                etcdrpc.WatchRequest(create_request=create), callback))
        except RuntimeError:
            raise WatchTimedOut() from None  # closed
        try:
            return future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # a late "created" cancels the watch (see _handle)
            raise WatchTimedOut() from None
        except concurrent.futures.CancelledError:
            raise WatchTimedOut() from None

    def _open(self) -> asyncio.Queue[Any]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            stub = etcdrpc.WatchStub(self._loop.channel(self._target))
            self._call = stub.Watch(_requests(self._queue), metadata=self._metadata)
            self._reader = asyncio.ensure_future(self._read(self._call))
        return self._queue

    async def _create(self, request: Any, callback: Callable[[object], None]) -> int:
        if self.ended:
            raise self._error or WatchTimedOut()
        queue = self._open()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((future, callback))
        queue.put_nowait(request)
        return await future

    async def _read(self, call: Any) -> None:
        error: BaseException | None = None
        try:
            async for response in call:
                self._handle(response)
        except grpc.RpcError as exc:
            error = exc
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # never leave watches without their end
            log.exception("etcd watch stream failed")
            error = exc
        finally:
            self._end(error)

    def _cancel_on_stream(self, watch_id: int) -> None:
        if self._queue is not None and not self.ended:
            self._queue.put_nowait(etcdrpc.WatchRequest(
                cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id)))

    def _handle(self, response: Any) -> None:
        watch_id = int(response.watch_id)
        if response.created:
            if not self._pending:
                self._cancel_on_stream(watch_id)
                return
            future, callback = self._pending.popleft()
            if future.done():  # its creator gave up waiting
                self._cancel_on_stream(watch_id)
                return
            if response.compact_revision:
                future.set_exception(RevisionCompactedError(response.compact_revision))
                return
            if response.canceled:
                future.set_exception(WatchTimedOut(
                    f"etcd refused the watch: {response.cancel_reason}"))
                return
            self._callbacks[watch_id] = callback
            future.set_result(watch_id)
            if not response.events:
                return
        callback_ = self._callbacks.get(watch_id)
        if callback_ is None:  # leftovers of a cancelled watch
            return
        if response.compact_revision:
            del self._callbacks[watch_id]
            _safe(callback_, RevisionCompactedError(response.compact_revision))
            self._cancel_on_stream(watch_id)
            return
        if response.canceled:  # etcd ended this watch: it says so, it is not "no events"
            del self._callbacks[watch_id]
            _safe(callback_, None)
            return
        _safe(callback_, WatchResponse(response.header,
                                       [events.new_event(e) for e in response.events]))

    def _end(self, error: BaseException | None) -> None:
        if self.ended and not self._callbacks and not self._pending:
            return
        self.ended, self._error = True, error
        callbacks, self._callbacks = list(self._callbacks.values()), {}
        pending, self._pending = list(self._pending), collections.deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(error or WatchTimedOut("the etcd watch stream ended"))
        for callback in callbacks:
            _safe(callback, error)

    def cancel(self, watch_id: int) -> None:
        """Ends one watch (its callback is not called again). Never blocks."""
        def cancel() -> None:
            if self._callbacks.pop(watch_id, None) is not None:
                self._cancel_on_stream(watch_id)
        self._loop.call_soon(cancel)

    def close(self) -> None:
        """Ends the stream; every open watch's callback gets its end. Never blocks."""
        def close() -> None:
            if self._call is not None:
                self._call.cancel()
            self._end(None)
        self.ended = True
        self._loop.call_soon(close)


class KeepaliveTimeout(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    """A keepalive unanswered within its time: handled as the gRPC deadline a call of
    its own would have met (DEADLINE_EXCEEDED: the client moves to the next member)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "the lease keepalive got no answer in time"


class KeepaliveStream:
    """ONE LeaseKeepAlive stream for the keepalives of one lease on one member.

    A stream per keepalive (what one gRPC call per renewal takes) costs about twice the
    CPU of a request on an open stream. The caller (the session keeper's renewer, one
    at a time) queues its request on the stream and waits for the answer on a future,
    within ``timeout``: no polling, no thread of its own. No answer in time
    (:class:`KeepaliveTimeout`), an error or the stream's end closes it (the next
    keepalive opens a new one), so a late answer never counts for a later keepalive."""

    def __init__(self, loop: StreamLoop, target: str, metadata: Sequence[tuple[str, str]],
                 key: tuple[Any, ...]) -> None:
        self.key = key
        self._loop = loop
        self._target = target
        self._metadata = tuple(metadata)
        self._broken = False
        self._queue: asyncio.Queue[Any] | None = None  # loop thread only
        self._call: Any = None

    async def _send(self, request: Any) -> Any:
        if self._call is None:
            self._queue = asyncio.Queue()
            stub = etcdrpc.LeaseStub(self._loop.channel(self._target))
            self._call = stub.LeaseKeepAlive(_requests(self._queue), metadata=self._metadata)
        assert self._queue is not None
        self._queue.put_nowait(request)
        answer = await self._call.read()
        return None if answer is grpc.aio.EOF else answer

    def send(self, request: Any, timeout: float) -> Any:
        """The answer to ``request`` (None if the stream ended); raises the stream's
        grpc.RpcError or KeepaliveTimeout."""
        if self._broken:
            raise KeepaliveTimeout()
        try:
            future = self._loop.submit(self._send(request))
        except RuntimeError:
            raise KeepaliveTimeout() from None  # closed
        try:
            return future.result(max(0.0, timeout))
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            future.cancel()
            self._broken = True
            raise KeepaliveTimeout() from None
        except grpc.RpcError:
            self._broken = True
            raise

    def close(self) -> None:
        """Ends the stream. Never blocks."""
        self._broken = True

        def close() -> None:
            if self._queue is not None:
                self._queue.put_nowait(None)
            if self._call is not None:
                self._call.cancel()
        self._loop.call_soon(close)
