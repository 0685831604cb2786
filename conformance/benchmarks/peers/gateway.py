"""tenure through ``tenure serve`` (the HTTP gateway), in handle mode.

    POST /v1/elections/{name}/campaign {"candidate_id", "ttl"}  -> {"handle", "token", ...}
    POST /v1/leaderships/{handle}/keepalive   every ttl/3 while leading
    DELETE /v1/leaderships/{handle}           resign

Each contender is a separate HTTP caller of one gateway process (the gateway gives each
campaign a store client with its own session, warm from its pool). A caller that stops sending
keepalives loses its leadership after ``ttl``: that is what a crash failover measures
here. A keepalive answered 410 is reported as the loss. URL: ``tenure-serve://h:p``.

The caller speaks HTTP/1.1 on a keep-alive socket by hand (:class:`_Connection`), not
through http.client, for the reason ``gatewayproc.leader_queries`` gives: the
caller shares the 2 cores with the gateway, and http.client's header parsing in Python
(~0.15 ms per answer here) would be counted as the gateway's. What it does not do:
chunked answers, redirects, TLS (the gateway's JSON answers carry a Content-Length).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback


class _Connection:
    """One keep-alive HTTP/1.1 connection to the gateway (connected at the first call,
    again after a failed one)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self._host = f"Host: {host}:{port}\r\n".encode()
        self._sock: socket.socket | None = None
        self._buffered = b""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Sends one request (a JSON body if ``body`` is not None); returns the answer's
        status and its decoded JSON body (None when empty)."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\n".encode() + self._host
                + (b"Content-Type: application/json\r\n" if body is not None else b"")
                + f"Content-Length: {len(data)}\r\n\r\n".encode())
        try:
            if self._sock is None:
                self._sock = socket.create_connection(self.address, timeout=self.timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._buffered = b""
            self._sock.sendall(head + data)
            status, raw = self._answer(self._sock)
        except BaseException:
            self.close()
            raise
        return status, (json.loads(raw) if raw else None)

    def _answer(self, sock: socket.socket) -> tuple[int, bytes]:
        status, body, self._buffered = read_answer(sock, self._buffered)
        return status, body

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class GatewayContender(Contender):
    """One HTTP caller of ``tenure serve`` campaigning in handle mode.

    Its keepalive loop is one thread for the contender's life, on its own keep-alive
    connection, as a long-running caller would have it: a campaign does not start a
    thread (which the uncontended-campaign figure would count as the gateway's)."""

    reports_loss = True

    def __init__(self, url: str, election: str, ttl: float, member_id: str,
                 on_lost: LostCallback) -> None:
        super().__init__(url, election, ttl, member_id, on_lost)
        host, _, port = url.split("://", 1)[-1].rstrip("/").rpartition(":")
        self.address = (host, int(port))
        self.conn = _Connection(host, int(port), timeout=300)
        self.handle: str | None = None
        self._changed = threading.Condition()
        self._kept: str | None = None  # the handle the keeper keeps alive
        self._term = 0  # bumped by every campaign and resign
        self._calling = False  # a keepalive is on the wire
        self._closed = False
        self.keepalives = 0
        self._keeper = threading.Thread(target=self._keep, daemon=True)
        self._keeper.start()

    def campaign(self) -> dict[str, Any]:
        status, body = self.conn.call("POST",
                                      f"/v1/elections/{quote(self.election)}/campaign",
                                      {"candidate_id": self.member_id, "ttl": self.ttl})
        if status != 200:
            raise RuntimeError(f"campaign: HTTP {status} {body}")
        self.handle = body["handle"]
        with self._changed:
            self._kept = self.handle
            self._term += 1
            self._changed.notify_all()
        return {"token": body["token"]}

    def _keep(self) -> None:
        conn = _Connection(*self.address, timeout=self.ttl)
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._kept is not None or self._closed)
                    if self._closed:
                        return
                    term = self._term
                    if self._changed.wait_for(self._moved_on(term), timeout=self.ttl / 3):
                        continue
                    handle, self._calling = self._kept, True
                try:
                    status, body = conn.call("POST", f"/v1/leaderships/{handle}/keepalive")
                finally:
                    with self._changed:
                        self._calling = False
                        self._changed.notify_all()
                self.keepalives += 1
                if status == 410:
                    with self._changed:
                        if self._term != term:
                            continue  # resigned meanwhile: not a loss
                        self._kept = None
                    self.on_lost(str(body.get("detail", "ended")), None)
        finally:
            conn.close()

    def _moved_on(self, term: int) -> Callable[[], bool]:
        return lambda: self._term != term or self._closed

    def resign(self) -> None:
        with self._changed:
            self._kept = None
            self._term += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._calling)
        if self.handle is not None:
            self.conn.call("DELETE", f"/v1/leaderships/{self.handle}")
            self.handle = None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.conn.close()

    def counters(self) -> dict[str, float]:
        return {"keepalives": self.keepalives}


def read_answer(sock: socket.socket, buffered: bytes) -> tuple[int, bytes, bytes]:
    """Reads one HTTP/1.1 answer with a Content-Length body from ``sock``, after the
    bytes already ``buffered``; returns its status, its body and what was read past it.
    Hand-written (as the leader-query callers): http.client's header parsing cost the
    caller ~0.15 ms per answer, which the bench would charge to the gateway."""
    while b"\r\n\r\n" not in buffered:
        buffered += _recv(sock)
    head, _, rest = buffered.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += _recv(sock)
    return status, rest[:length], rest[length:]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the gateway closed the connection")
    return chunk
