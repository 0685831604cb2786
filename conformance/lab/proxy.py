"""A small TCP proxy for network faults between a client (or a peer) and a store node.

Example::

    proxy = Proxy(("127.0.0.1", 2379))          # listens on 127.0.0.1:<free port>
    proxy.cut()                                  # open connections reset, new ones refused
    proxy.heal()
    proxy.latency(200)                           # +200 ms each way, order kept

Promises: ``cut()`` returns only after every open connection through the proxy is
closed (RST), and while cut every new connection is closed at once, so a client sees a
connection failure, never a silent hang. ``cut(blackhole=True)`` instead keeps
connections open and discards every byte both ways (what a network partition looks like:
the client waits for its own timeouts). ``latency(ms)`` delays every chunk by ``ms``
each way. All proxies of a Python process share one asyncio loop on a daemon thread;
the proxy lives as long as that process (it is not a separate process to orphan).

Connections may be *tagged* by a ``tagger`` that sees the first bytes of a connection
(used to recognise which etcd member opened a peer connection); ``block(tag)`` cuts only
connections with that tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

Tagger = Callable[[bytes], str | None]
"""Looks at the first bytes a connection sends; returns its tag, or None to wait for more
bytes (up to 16 KiB, after which the connection is tagged ``""``)."""

_PEEK_LIMIT = 16384


class _Loop:
    """The shared event loop thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="tenure-lab-proxy", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.get()).result(timeout)


_shared = _Loop()


class _Conn:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tag: str | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)
        for task in self.tasks:
            task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """Forwards ``listen_host:<port>`` to ``upstream``; see the module docstring."""

    def __init__(
        self,
        upstream: tuple[str, int],
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        tagger: Tagger | None = None,
        name: str = "",
    ) -> None:
        self.upstream = upstream
        self.name = name or f"proxy->{upstream[0]}:{upstream[1]}"
        self._tagger = tagger
        self._cut = False
        self._blackhole = False
        self._blocked: set[str] = set()
        self._latency = 0.0
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        _shared.call(self._start(listen_host, listen_port))
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]

    @property
    def address(self) -> str:
        """``host:port`` to connect to instead of the upstream."""
        return f"{self.host}:{self.port}"

    # -- fault controls (thread-safe) ----------------------------------------------

    def cut(self, blackhole: bool = False) -> None:
        """Breaks the path: resets open connections and refuses new ones; with
        ``blackhole`` keeps them open but drops every byte."""
        _shared.call(self._set_cut(True, blackhole))

    def heal(self) -> None:
        """Restores the path cut by :meth:`cut` (new connections work again)."""
        _shared.call(self._set_cut(False, False))

    def latency(self, ms: float) -> None:
        """Delays every chunk by ``ms`` milliseconds each way (0 removes it)."""
        if ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {ms}")
        self._latency = ms / 1000.0

    def block(self, tag: str) -> None:
        """Resets connections tagged ``tag`` and refuses new ones with that tag."""
        _shared.call(self._set_block(tag, True))

    def unblock(self, tag: str) -> None:
        _shared.call(self._set_block(tag, False))

    def close(self) -> None:
        """Stops listening and resets every connection. Idempotent."""
        with contextlib.suppress(Exception):
            _shared.call(self._close())

    @property
    def is_cut(self) -> bool:
        return self._cut

    # -- loop side ---------------------------------------------------------------------

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()

    async def _set_cut(self, cut: bool, blackhole: bool) -> None:
        self._cut = cut and not blackhole
        self._blackhole = cut and blackhole
        if self._cut:
            for conn in list(self._conns):
                conn.abort()
            self._conns.clear()

    async def _set_block(self, tag: str, on: bool) -> None:
        if on:
            self._blocked.add(tag)
            for conn in [c for c in self._conns if c.tag == tag]:
                conn.abort()
                self._conns.discard(conn)
        else:
            self._blocked.discard(tag)

    def _refused(self, conn: _Conn) -> bool:
        return self._cut or (conn.tag is not None and conn.tag in self._blocked)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        if self._cut:
            _reset(writer)
            return
        first = b""
        if self._tagger is not None:
            while conn.tag is None:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), timeout=10)
                except (TimeoutError, OSError):
                    chunk = b""
                if not chunk:
                    _reset(writer)
                    return
                first += chunk
                conn.tag = self._tagger(first)
                if conn.tag is None and len(first) >= _PEEK_LIMIT:
                    conn.tag = ""
            if self._refused(conn):
                _reset(writer)
                return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=10
            )
        except (OSError, TimeoutError):
            _reset(writer)
            return
        if self._refused(conn):
            _reset(writer)
            _reset(up_writer)
            return
        conn.upstream = up_writer
        self._conns.add(conn)
        if first:
            up_writer.write(first)
        conn.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, conn)),
            asyncio.create_task(self._pump(up_reader, writer, conn)),
        ]

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                item = await pending.get()
                if item is None:
                    break
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._blackhole:
                    continue
                dst.write(data)
                await dst.drain()
            with contextlib.suppress(OSError):
                dst.write_eof()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if self._blackhole:
                    continue
                pending.put_nowait((loop.time() + self._latency, data))
            pending.put_nowait(None)
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            conn.abort()
            self._conns.discard(conn)
            return
        if all(t.done() or t is asyncio.current_task() for t in conn.tasks):
            conn.abort()
            self._conns.discard(conn)


class ProxyGroup:
    """Proxies that act together (e.g. one in front of each store node): ``cut``,
    ``heal``, ``latency`` and ``close`` apply to all. ``url`` is the backend URL that goes
    through them (when the group was built for one), ``hosts`` their ``h:p,h:p`` list."""

    def __init__(self, proxies: list[Proxy], url: str = "") -> None:
        self.proxies = proxies
        self.url = url

    @property
    def address(self) -> str:
        """``host:port`` of the first proxy."""
        return self.proxies[0].address

    @property
    def hosts(self) -> str:
        """Every proxy's ``host:port``, comma-separated (a URL's host list)."""
        return ",".join(p.address for p in self.proxies)

    def cut(self, blackhole: bool = False) -> None:
        """Breaks every path (refused, or with ``blackhole`` silently dropped)."""
        for proxy in self.proxies:
            proxy.cut(blackhole)

    def heal(self) -> None:
        """Restores every path."""
        for proxy in self.proxies:
            proxy.heal()

    def latency(self, ms: float) -> None:
        """Adds ``ms`` of delay each way on every path (0 removes it)."""
        for proxy in self.proxies:
            proxy.latency(ms)

    def close(self) -> None:
        """Stops every proxy."""
        for proxy in self.proxies:
            proxy.close()
