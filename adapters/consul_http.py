"""HTTP to Consul for :mod:`tenure.adapters.consul`: what py-consul's API does not offer.

:class:`ConsulHTTP` sends requests over kept-alive sockets (:class:`Line`: HTTP/1.1,
the request in one send) to the first agent that can be connected to, with a
per-call timeout, the ACL token on every request (py-consul's Txn sends none) and
tenure's error mapping: 5xx, 429 and timeouts are StoreUnavailable, 401/403 a
ConfigError. Connections are bounded: at most POOL_SIZE per agent for ordinary
requests (more callers wait for a free one, up to their timeout) plus one for session
renewals, which so never queue behind them (:class:`RenewalLine`). ``sent`` counts
every request, blocking queries and renewals included.

Hand-written, not py-consul's requests session, urllib3's pool nor http.client:
measured against a local agent, requests spends about 1.5 ms of CPU per transaction
(proxy and netrc look-ups in the environment, cookie and settings merges), urllib3
0.7 ms, http.client 0.33 ms (two sends per request, headers parsed by the email
package), this 0.14 ms. A handover is one request on each side and an idle client
mostly renews, so that was most of a handover's latency and of an idle client's CPU.
Consul's answers are simple: a status line, header fields, a body by Content-Length
or chunked (:func:`read_head`, :func:`read_body`).

Two ways to wait for a change, both blocking queries (``?index=&wait=``) on a
connection of their own so that they can be aborted at once (py-consul's cannot be):

* :class:`KeyWatch`: one key, read by the thread that waits (no helper thread); the
  fast lane of a few waiters;
* :class:`Watcher`: ONE thread and ONE blocking query for any number of keys of one
  client -- every held leader key (a loss is reported once a consistent check shows
  it no longer held by its session) and the waits beyond the fast lane. What it costs
  is in its docstring.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from tenure.errors import ConfigError, StoreUnavailable
from tenure.readiness import readable
from tenure.store import Signal

log = logging.getLogger("tenure.consul")

TOKEN_ENV = "CONSUL_HTTP_TOKEN"
"""The environment variable Consul's own tools read the ACL token from."""
BLOCK_WAIT = 10
"""Seconds a blocking query waits on the server before it is sent again."""
ERROR_PAUSE = 0.5
"""Seconds a failed blocking query waits before it fires (the caller then re-reads)."""
HTTP_ERRORS = (OSError, ValueError, http.client.HTTPException, StoreUnavailable)
"""What a blocking query or a guard may meet on the wire."""
POOL_SIZE = 8
"""Connections per agent for ordinary requests (renewals and blocking queries aside)."""
TXN_OPS = 64
"""Operations per transaction Consul documents (1.14 takes 128)."""
CHECK_SHARE = 0.1
"""Largest share of its time the :class:`Watcher` spends checking (it paces itself)."""
START_PAUSE = 0.01
"""Seconds the :class:`Watcher` waits, once woken with nothing watched, before its first
query (see :meth:`Watcher._run`): a guard's loss is reported at most that much later."""
FAST_WAITS = 16
"""Waits of one client that get a blocking query (a :class:`KeyWatch`: a connection) of
their own; the rest share its :class:`Watcher` (one read more per change)."""


class Answer:
    """An HTTP answer, read whole: what the callers of :meth:`ConsulHTTP.call` use of
    ``requests.Response`` (``status_code``, ``text``, ``headers``, ``json()``)."""

    def __init__(self, status: int, text: str, headers: Headers) -> None:
        self.status_code = status
        self.text = text
        self.headers = headers

    def json(self) -> Any:
        """The body decoded as JSON (ValueError if it is not)."""
        return json.loads(self.text)


class Headers(dict[str, str]):
    """Header fields by lower-cased name; :meth:`get` takes any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Unreachable(OSError):
    """The agent could not be connected to (the caller tries the next one)."""


_RESET = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
"""What a kept connection the agent closed meanwhile raises on its next use."""
_LINE = 65536
"""Longest status or header line read (longer: the answer is refused)."""
_INDEX = re.compile(rb"\r\nx-consul-index:[ \t]*([0-9]+)", re.IGNORECASE)
_RETIRED_MAX = 4
"""Connections kept waiting for :meth:`ConsulHTTP.reap` at most (more: closed at once)."""


def read_head(reader: BinaryIO) -> tuple[int, Headers]:
    """Reads an HTTP/1.1 status line and header fields: (status, fields)."""
    line = reader.readline(_LINE + 1)
    if not line:
        raise http.client.RemoteDisconnected("Consul closed the connection without an answer")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(repr(line[:80]))
    fields = Headers()
    while True:
        field = reader.readline(_LINE + 1)
        if field in (b"\r\n", b"\n", b""):
            break
        if len(field) > _LINE:
            raise http.client.LineTooLong("header line")
        name, _, value = field.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    if parts[0] == b"HTTP/1.0":
        fields.setdefault("connection", "close")
    return int(parts[1]), fields


def read_body(reader: BinaryIO, status: int, fields: Headers) -> bytes:
    """Reads the body the fields announce: none (1xx, 204, 304), chunked, by
    Content-Length, or to the end of the connection (then ``connection: close`` is set
    in ``fields``). A malformed length is an HTTPException."""
    if status < 200 or status in (204, 304):
        return b""
    try:
        return _body(reader, fields)
    except ValueError as exc:
        raise http.client.HTTPException(f"malformed answer from Consul: {exc}") from None


def _body(reader: BinaryIO, fields: Headers) -> bytes:
    if "chunked" in fields.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(reader.readline(_LINE + 1).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while reader.readline(_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(chunks)
            chunks.append(_exactly(reader, size))
            reader.readline(_LINE + 1)  # the CRLF after the chunk
    length = fields.get("content-length")
    if length is not None:
        return _exactly(reader, int(length))
    fields["connection"] = "close"
    return reader.read()


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise http.client.IncompleteRead(data, size - len(data))
    return data


class Line:
    """One keep-alive HTTP/1.1 connection to agent number ``agent``, one exchange at a
    time: the request in ONE send, the answer parsed by :func:`read_head` and
    :func:`read_body` (a tenth of http.client's cost, whose header parser is the
    email package's).

    Before a kept connection is used again it is checked for an end the agent sent
    meanwhile (readable while idle: EOF) and opened anew if so, as urllib3 does; a
    reset met anyway is retried once on a new connection only for an ``idempotent``
    request (a write might have been applied)."""

    def __init__(self, client: ConsulHTTP, agent: int) -> None:
        self.client = client
        self.agent = agent
        host, port = client.hosts[agent]
        self._host = f"Host: {host}:{port}\r\n"
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._early = b""
        """Answer bytes :meth:`answer_started` read ahead of :meth:`read_index`."""

    def exchange(self, method: str, target: str, body: bytes | None, timeout: float,
                 idempotent: bool, sent: Callable[[], None] | None = None) -> Answer:
        """Sends one request and reads its answer (``sent()`` is called once the request
        is out, before its answer is awaited); Unreachable if it cannot connect, OSError
        or HTTPException on a failure after that."""
        reused = self._sock is not None and not self._dropped()
        if not reused:
            self._open(timeout)
        try:
            return self._send(method, target, body, timeout, sent)
        except _RESET:
            if not (reused and idempotent):
                raise
        self._open(timeout)
        return self._send(method, target, body, timeout, sent)

    def _dropped(self) -> bool:
        sock = self._sock
        if sock is None:
            return True
        return readable(sock.fileno(), 0.0)

    def _open(self, timeout: float) -> None:
        self.drop()
        host, port = self.client.hosts[self.agent]
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(type(exc).__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self.client.tls
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise Unreachable(type(exc).__name__) from exc
        self._sock, self._reader = sock, sock.makefile("rb")

    def _send(self, method: str, target: str, body: bytes | None, timeout: float,
              sent: Callable[[], None] | None = None) -> Answer:
        sock, reader = self._sock, self._reader
        assert sock is not None and reader is not None
        head = [f"{method} {target} HTTP/1.1\r\n", self._host, self.client.head]
        if body is not None:
            head.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
        elif method in ("PUT", "POST"):
            head.append("Content-Length: 0\r\n")
        head.append("\r\n")
        try:
            sock.settimeout(timeout)
            sock.sendall("".join(head).encode("latin-1") + (body or b""))
            if sent is not None:
                sent()
            if self.client.retired:  # closed while the agent works on this request
                self.client.reap()
            status, fields = read_head(reader)
            data = read_body(reader, status, fields)
        except BaseException:
            self.drop()
            raise
        if fields.get("connection", "").lower() == "close":
            self.drop()
        return Answer(status, data.decode("utf-8", "replace"), fields)

    def open(self, timeout: float) -> socket.socket:
        """Connects (Unreachable if it cannot); the socket, for a ``poll``."""
        self._open(timeout)
        assert self._sock is not None
        return self._sock

    def send(self, target: str) -> None:
        """Sends a GET without reading its answer (:meth:`read_head` reads it)."""
        assert self._sock is not None
        self._sock.sendall(f"GET {target} HTTP/1.1\r\n{self._host}{self.client.head}\r\n"
                           .encode("latin-1"))

    def read_head(self) -> tuple[int, Headers]:
        """The status and header fields of the answer to :meth:`send`."""
        assert self._reader is not None
        return read_head(self._reader)

    def answer_started(self) -> bool:
        """Whether a socket found readable holds the answer's first bytes. Over TLS it
        may hold only records without application data -- TLS 1.3 session tickets,
        which a server sends after the handshake, before any answer -- and a blocking
        read would then wait for the answer itself (a blocking query: up to its wait,
        far past the socket timeout). Those records are consumed and False returned;
        plain TCP: always True."""
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket) or self._early or sock.pending():
            return True
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            self._early = sock.recv(_LINE)
        except ssl.SSLWantReadError:
            return False
        finally:
            sock.settimeout(timeout)
        return True  # (b"": the end, which read_index reports)

    def read_index(self) -> tuple[int, int]:
        """The status and ``X-Consul-Index`` of the answer to :meth:`send`, read from the
        socket itself (one ``recv`` while the head fits; no other field is parsed): a
        waiter's wake-up path. Only for a connection whose answers nothing else reads
        (the buffered reader is bypassed); the body is left unread."""
        sock = self._sock
        assert sock is not None
        data, self._early = self._early, b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > _LINE:
                raise http.client.LineTooLong("answer head")
            chunk = sock.recv(_LINE)
            if not chunk:
                raise http.client.RemoteDisconnected("Consul closed the connection "
                                                     "without an answer")
            data += chunk
        status = data[:min(end, 80)].split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
            raise http.client.BadStatusLine(repr(data[:80]))
        found = _INDEX.search(data, 0, end + 2)
        return int(status[1]), int(found[1]) if found else 0

    def drop(self) -> None:
        """Closes the connection (the next exchange opens a new one)."""
        sock, reader, self._sock, self._reader = self._sock, self._reader, None, None
        self._early = b""
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()


class ConsulHTTP:
    """Requests to a list of Consul agents (see the module docstring)."""

    def __init__(self, hosts: tuple[tuple[str, int], ...], *, scheme: str, ca: str | None,
                 dc: str | None, timeout: float, token: str | None, description: str) -> None:
        self.hosts = hosts
        self.dc = dc
        self.timeout = timeout
        self.description = description
        self.headers = {"X-Consul-Token": token} if token else {}
        self.head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        """The header lines every request carries (the ACL token, if any)."""
        self.tls = ssl.create_default_context(cafile=ca) if scheme == "https" else None
        self._idle: list[list[Line]] = [[] for _ in hosts]
        self._slots = [threading.BoundedSemaphore(POOL_SIZE) for _ in hosts]
        self._pool = threading.Lock()
        self._closed = False
        self._renewals = RenewalLine(self)
        self.retired: list[Line] = []
        """Connections done with, closed by :meth:`reap` (see :meth:`retire`)."""
        self._count = threading.Lock()
        self.sent = 0
        """Requests sent so far (blocking queries included)."""
        self.current = 0
        """Index of the agent in use (moved on by failures)."""

    def retire(self, line: Line) -> None:
        """Closes ``line`` later: once the next request is sent (by any thread), while
        the agent works on it, or at :meth:`close`. A waiter's blocking query is answered
        on the path to its lock request, and closing a socket costs that path ~0.1 ms
        (on loopback, ``close`` also runs the agent's side of the end)."""
        with self._pool:
            if not self._closed and len(self.retired) < _RETIRED_MAX:
                self.retired.append(line)
                return
        line.drop()

    def reap(self) -> None:
        """Closes the connections :meth:`retire` kept."""
        with self._pool:
            lines, self.retired = self.retired, []
        for line in lines:
            line.drop()

    def count(self) -> None:
        """Counts one request sent (see :attr:`sent`)."""
        with self._count:
            self.sent += 1

    def params(self, extra: dict[str, str]) -> dict[str, str]:
        """Query parameters with the datacenter, if one is set."""
        return {**extra, "dc": self.dc} if self.dc else extra

    def target(self, path: str, params: dict[str, str]) -> str:
        """``path?query`` of a request (the datacenter added)."""
        query = urlencode(self.params(params))
        path = quote(path, safe="/~")
        return f"{path}?{query}" if query else path

    def move_on(self) -> None:
        """Uses the next agent from now on (the current one failed)."""
        self.current = (self.current + 1) % len(self.hosts)

    def call(self, method: str, path: str, params: dict[str, str] | None = None,
             body: object = None, timeout: float | None = None,
             idempotent: bool | None = None, sent: Callable[[], None] | None = None,
             ) -> Answer:
        """One request to the current agent, moving on to the next ones while an agent
        cannot be connected to. 5xx, 429 and read timeouts are StoreUnavailable.
        ``idempotent`` (default: a GET) lets a reset kept connection be retried once."""
        data = None if body is None else json.dumps(body).encode()
        limit = timeout or self.timeout
        target = self.target(path, params or {})
        again = method == "GET" if idempotent is None else idempotent
        failures = []
        for attempt in range(len(self.hosts)):
            index = (self.current + attempt) % len(self.hosts)
            host, port = self.hosts[index]
            where = f"Consul {host}:{port}"
            line = self._take(index, where, limit)
            try:
                self.count()
                answer = line.exchange(method, target, data, limit, again, sent)
            except Unreachable as exc:
                failures.append(f"{host}:{port}: {exc}")
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.current = index
                self.move_on()
                raise StoreUnavailable(f"{where} did not answer {method} {path} within "
                                       f"{limit:g} s ({type(exc).__name__})") from None
            finally:
                self._give_back(index, line)
            self.current = index
            self.refuse(where, method, path, answer.status_code, answer.text)
            return answer
        raise StoreUnavailable(f"cannot reach Consul at {self.description}: "
                               + "; ".join(failures))

    def _take(self, index: int, where: str, limit: float) -> Line:
        if not self._slots[index].acquire(timeout=limit):
            raise StoreUnavailable(f"{where}: all {POOL_SIZE} connections stayed busy for "
                                   f"{limit:g} s")
        with self._pool:
            idle = self._idle[index]
            return idle.pop() if idle else Line(self, index)

    def _give_back(self, index: int, line: Line) -> None:
        with self._pool:
            if self._closed:
                line.drop()
            else:
                self._idle[index].append(line)
        self._slots[index].release()

    def refuse(self, where: str, method: str, path: str, status: int, body: str) -> None:
        """Raises for an answer no caller handles: 429 and 5xx StoreUnavailable,
        401/403 ConfigError."""
        text = body.strip()[:200]
        if status == 429 or (  # 429: e.g. http_max_conns_per_client
                status >= 500 and "Invalid Session TTL" not in text):
            raise StoreUnavailable(f"{where} failed {method} {path}: {status} {text}")
        if status in (401, 403):
            raise ConfigError(f"Consul refused {method} {path} ({status} {text}); give an "
                              f"ACL token with key and session write rights via "
                              f"token_file= or ${TOKEN_ENV}")

    def renew(self, path: str, timeout: float) -> tuple[int, str]:
        """One PUT on the renewals' own connection (:class:`RenewalLine`): (status,
        body), errors as :meth:`call`'s."""
        return self._renewals.put(path, timeout)

    def txn(self, ops: list[dict[str, Any]], read: bool = False,
            sent: Callable[[], None] | None = None,
            ) -> tuple[list[dict[str, Any]], list[str]]:
        """Runs a transaction (``read``: checks and gets only, answered ``?consistent``);
        returns (results, []) if it committed, else ([], errors) with errors[i] the
        failure of operation i ("" for operations that passed). ``sent``: called once
        the request is out (see :meth:`Line.exchange`)."""
        response = self.call("PUT", "/v1/txn", {"consistent": ""} if read else None,
                             body=[{"KV": op} for op in ops], idempotent=read, sent=sent)
        payload = response.json() if response.text else {}
        if response.status_code == 200:
            return [r["KV"] for r in payload.get("Results") or []], []
        if response.status_code != 409:
            raise StoreUnavailable(f"Consul transaction failed: {response.status_code} "
                                   f"{response.text.strip()[:200]}")
        errors = [""] * len(ops)
        for error in payload.get("Errors") or []:
            errors[int(error.get("OpIndex", 0))] = str(error.get("What", "failed"))
        return [], errors

    def get(self, key: str, **params: str) -> tuple[int, Any]:
        """A consistent read: (X-Consul-Index, decoded JSON, or None if there is none)."""
        response = self.call("GET", f"/v1/kv/{key}", {"consistent": "", **params})
        if response.status_code not in (200, 404):
            raise StoreUnavailable(f"Consul read of {key!r} failed: {response.status_code}")
        index = int(response.headers.get("X-Consul-Index", "0"))
        return index, response.json() if response.status_code == 200 else None

    def close(self) -> None:
        """Closes the agents' connections (one in use closes when given back)."""
        with self._pool:
            self._closed = True
            lines = [line for idle in self._idle for line in idle]
            for idle in self._idle:
                idle.clear()
        for line in lines:
            line.drop()
        self.reap()
        self._renewals.close()


class RenewalLine:
    """The session renewals' keep-alive connection (a :class:`Line`) to the current
    agent, apart from the pool so that a renewal never queues behind other requests.
    Like :meth:`ConsulHTTP.call` it moves on to the next agent while one cannot be
    connected to; a renewal is idempotent, so a kept connection the agent closed is
    opened again once. One caller at a time (the session keeper's renewer); a lock
    keeps :meth:`close` apart."""

    def __init__(self, client: ConsulHTTP) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._line: Line | None = None

    def put(self, path: str, timeout: float) -> tuple[int, str]:
        client = self.client
        target = client.target(path, {})
        failures = []
        with self._lock:
            for attempt in range(len(client.hosts)):
                index = (client.current + attempt) % len(client.hosts)
                host, port = client.hosts[index]
                where = f"Consul {host}:{port}"
                if self._line is None or self._line.agent != index:
                    self._drop()
                    self._line = Line(client, index)
                client.count()
                try:
                    answer = self._line.exchange("PUT", target, None, timeout, True)
                except Unreachable as exc:
                    self._drop()
                    failures.append(f"{host}:{port}: {exc}")
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    client.current = index
                    client.move_on()
                    raise StoreUnavailable(f"{where} did not answer PUT {path} within "
                                           f"{timeout:g} s ({type(exc).__name__})") from None
                client.current = index
                client.refuse(where, "PUT", path, answer.status_code, answer.text)
                return answer.status_code, answer.text
        raise StoreUnavailable(f"cannot reach Consul at {client.description}: "
                               + "; ".join(failures))

    def _drop(self) -> None:
        if self._line is not None:
            self._line.drop()
        self._line = None

    def close(self) -> None:
        """Closes the kept connection (a renewal after it opens a new one)."""
        with self._lock:
            self._drop()


class BlockingQuery:
    """One blocking GET at a time, each on a new :class:`Line` (answer head read by
    :meth:`Line.read_index`, as a :class:`KeyWatch`'s: a tenth of http.client's CPU, and
    it runs as a leadership starts); :meth:`abort` ends the one in flight (or the next
    one) at once."""

    def __init__(self, client: ConsulHTTP) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._aborted = False
        self._sock: socket.socket | None = None

    def arm(self) -> None:
        """Lets the next :meth:`get` run (after an :meth:`abort`)."""
        with self._lock:
            self._aborted = False

    def abort(self) -> None:
        """Ends the query in flight; :meth:`get` returns None until :meth:`arm`."""
        with self._lock:
            self._aborted = True
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the recv; SSLSocket's would drop TLS
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def get(self, path: str, params: dict[str, str], index: int) -> int | None:
        """Blocks until ``path``'s index moves past ``index`` or BLOCK_WAIT passes;
        returns the index then, or None if aborted."""
        with self._lock:
            if self._aborted:
                return None
        line = Line(self.client, self.client.current)
        try:
            sock = line.open(self.client.timeout)
            with self._lock:  # aborted while connecting: abort() found no socket to end
                if self._aborted:
                    return None
                self._sock = sock
            sock.settimeout(BLOCK_WAIT * 17 / 16 + self.client.timeout)
            query = self.client.params({**params, "index": str(max(1, index)),
                                        "wait": f"{BLOCK_WAIT}s"})
            self.client.count()
            line.send(f"/v1/kv/{quote(path, safe='/~')}?{urlencode(query)}")
            status, found = line.read_index()
        except HTTP_ERRORS:
            with self._lock:
                if self._aborted:
                    return None
            raise
        finally:
            with self._lock:
                self._sock = None
            line.drop()
        if status not in (200, 404):
            raise StoreUnavailable(f"Consul blocking query on {path!r}: {status}")
        return found


class KeyWatch(Signal):
    """Fires once ``key`` changes after ``index``: a Consul blocking query, sent again
    every BLOCK_WAIT s while the index stays; a failed query fires after ERROR_PAUSE.

    No helper thread: the query is sent, and its answer read, by the thread that
    :meth:`wait` s (it waits on the socket with ``poll``), so a change wakes the
    campaign itself -- no hand-off between threads on the handover path, and no thread
    per waiting candidate. Between waits the answer just stays in the socket (the
    index makes a later read miss nothing). :meth:`interrupt` (any thread) and
    :meth:`close` end a wait in progress at once by shutting the query's socket down;
    :meth:`close` calls ``on_close`` once."""

    interruptible = True

    def __init__(self, client: ConsulHTTP, key: str, index: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self.client = client
        self.key = key
        self.index = index
        self.fired = threading.Event()
        self.closed = threading.Event()
        self._on_close = on_close
        self._waiting = threading.Lock()
        """Held by the one thread in :meth:`wait` (it owns the connection meanwhile)."""
        self._state = threading.Lock()
        self._line: Line | None = None
        self._sock: socket.socket | None = None
        self._answer_by = 0.0
        self._failed_at: float | None = None
        self._interrupted = False
        self._woken = threading.Event()
        """Set with ``_interrupted`` (and by :meth:`close`): ends an ERROR_PAUSE at once."""
        self._shut_down = False
        """The connection's socket was shut by :meth:`interrupt`/:meth:`close`: its
        failed read is no store failure."""

    def start(self) -> KeyWatch:
        """Returns the watch; its first query goes out with the first :meth:`wait`."""
        return self

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + max(0.0, timeout)
        if not self._waiting.acquire(timeout=max(0.0, timeout)):
            return self.fired.is_set()
        try:
            return self._wait(end)
        finally:
            if self.closed.is_set():
                self._drop()
            self._waiting.release()

    def _wait(self, end: float) -> bool:
        while True:
            with self._state:
                if self._interrupted:
                    self._interrupted = False
                    self._woken.clear()
                    return True
            if self.fired.is_set() or self.closed.is_set():
                self.fired.set()
                return True
            now = time.monotonic()
            if self._failed_at is not None:
                if now >= self._failed_at + ERROR_PAUSE:
                    self.fired.set()
                    continue
                self._woken.wait(min(end, self._failed_at + ERROR_PAUSE) - now)
                if time.monotonic() >= end:
                    return self.fired.is_set()
                continue
            if now >= end:
                return False
            try:
                line = self._line or self._send()
                if line is None:
                    continue  # interrupted while sending: checked above
                sock = self._sock
                until = min(end, self._answer_by)
                if sock is None or not readable(sock.fileno(), until - now) \
                        or not line.answer_started():
                    if time.monotonic() >= self._answer_by:
                        raise TimeoutError("no answer to the blocking query")
                    if time.monotonic() >= end:
                        return False
                    continue
                found = self._read(line)
            except HTTP_ERRORS as exc:
                with self._state:
                    ours = self._shut_down or self._interrupted or self.closed.is_set()
                self._drop()
                if ours:
                    continue
                log.debug("blocking query on %s failed: %s", self.key, exc)
                self.client.move_on()
                self._failed_at = time.monotonic()
                continue
            if found != self.index:
                self.fired.set()

    def _send(self) -> Line | None:
        line = Line(self.client, self.client.current)
        sock = line.open(self.client.timeout)
        with self._state:
            if self._interrupted or self.closed.is_set():
                line.drop()
                return None
            self._line, self._sock = line, sock
        query = self.client.params({"index": str(max(1, self.index)), "wait": f"{BLOCK_WAIT}s"})
        self.client.count()
        line.send(f"/v1/kv/{quote(self.key, safe='/~')}?{urlencode(query)}")
        self._answer_by = time.monotonic() + BLOCK_WAIT * 17 / 16 + self.client.timeout
        return line

    def _read(self, line: Line) -> int:
        """Reads the answer the socket holds (its head: the index is a header field);
        the key's index then."""
        status, found = line.read_index()
        with self._state:  # one query per connection: its body is not needed
            self._line, self._sock = None, None
            self._shut_down = False
        if status in (200, 404) and found != self.index:
            self.client.retire(line)  # a wake: closed once the next request is out
        else:
            line.drop()
        if status not in (200, 404):
            raise StoreUnavailable(f"Consul blocking query on {self.key!r}: {status}")
        self.returned(found)
        return found

    def returned(self, found: int) -> None:
        """Called with the index of each answer (a hook for measurements)."""

    def _drop(self) -> None:
        with self._state:
            line, self._line, self._sock = self._line, None, None
            self._shut_down = False
        if line is not None:
            line.drop()

    def _shut(self) -> None:
        """Wakes a wait blocked on the socket (its read then fails)."""
        sock = self._sock
        if sock is not None:
            self._shut_down = True
            with contextlib.suppress(OSError):  # wakes the poll; SSLSocket's would drop TLS
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def interrupt(self) -> None:
        with self._state:
            self._interrupted = True
            self._woken.set()
            self._shut()

    def close(self) -> None:
        with self._state:
            self.closed.set()
            self._woken.set()
            self._shut()
        if self._waiting.acquire(blocking=False):  # else the waiter drops it on its way out
            try:
                self._drop()
            finally:
                self._waiting.release()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


@dataclass(eq=False)
class Watched:
    """One key a :class:`Watcher` checks: a guard (``lost`` set: the key must stay held
    by ``session``) or a wait (its ModifyIndex must stay ``seen``, 0 = absent).
    ``since`` is the Raft index of the read or write that armed it."""

    key: str
    since: int
    seen: int = 0
    session: str = ""
    lost: Callable[[], None] | None = None
    fired: threading.Event = field(default_factory=threading.Event)

    def unchanged(self, entry: dict[str, Any] | None) -> bool:
        if self.lost is not None:
            return entry is not None and entry.get("Session") == self.session
        return (int(entry["ModifyIndex"]) if entry else 0) == self.seen

    def check(self) -> dict[str, Any]:
        """The transaction operation that fails once :meth:`unchanged` would be False."""
        if self.lost is not None:
            return {"Verb": "check-session", "Key": self.key, "Session": self.session}
        if self.seen:
            return {"Verb": "check-index", "Key": self.key, "Index": self.seen}
        return {"Verb": "check-not-exists", "Key": self.key}


class SharedWait(Signal):
    """A :class:`Watcher`'s wait on one key (see :meth:`Watcher.watch`)."""

    interruptible = True

    def __init__(self, watcher: Watcher, entry: Watched) -> None:
        self.watcher = watcher
        self.entry = entry

    def interrupt(self) -> None:
        self.entry.fired.set()  # a spurious fire: the waiter re-checks and re-reads

    def wait(self, timeout: float) -> bool:
        return self.entry.fired.wait(max(0.0, timeout))

    def close(self) -> None:
        self.watcher.drop(self.entry)


def folder(keys: Iterable[str]) -> str:
    """The deepest ``.../`` that every key lies under ("" if there is none)."""
    common = os.path.commonprefix(list(keys))  # noqa: RUF071 - cut at a "/" below
    return common[: common.rfind("/") + 1]


class Watcher:
    """ONE thread and ONE blocking query for all the keys one client guards or waits on.

    It watches the deepest folder ``F/`` holding every such key, by a blocking query
    on ``F?keys&separator=/`` -- everything under ``F/`` collapses into the one answer
    line ``F/``, so the answer stays a few bytes however many keys there are (keys
    beside the folder that start with the same letters, ``F2/...``, are listed and wake
    it too); ONE key alone (a client's one leadership) is watched itself, so changes
    beside it (its election's queue) cost nothing. After each change it checks, in ONE
    consistent read, every key it keeps: a read-only transaction of ``check-session``/
    ``check-index`` operations while there are at most TXN_OPS of them (O(those keys)),
    else a recursive read of ``F/`` (O(every key under it)). Consul offers no narrower
    read: it indexes keys by session, but no HTTP query returns the keys a session
    holds, and a marker key per session would show the session's end, not a leader
    key deleted by an operator.
    Checks are paced so that they take at most CHECK_SHARE of the time, so a burst of
    changes costs a few checks, and a loss is reported up to ~10 x a check's duration
    late (milliseconds for one leadership, about a second for 10,000 in one folder).
    While nothing changes it sends one blocking query per BLOCK_WAIT s, whatever the
    number of keys. A guard whose key is found not held by its session calls ``lost``
    once (in this thread, no lock held); a wait fires once its key changed, and all
    waits fire after a failed check (their owners then re-read).

    Nothing is missed: an entry armed at Raft index ``since`` after the blocking
    query's index (or outside ``F/``) is covered because the query returns for it; one
    armed before is checked at once (the query is aborted)."""

    def __init__(self, client: ConsulHTTP) -> None:
        self.client = client
        self.checks = 0
        """Consistent checks done so far."""
        self._cond = threading.Condition()
        self._entries: set[Watched] = set()
        self._query = BlockingQuery(client)
        self._stop = threading.Event()
        self._folder = ""
        self._index = 0
        self._waking = False
        self._prewoken = False
        self._pausing = False
        """The thread is in its START_PAUSE: an entry added meanwhile needs no wake-up."""
        self._again = False
        self._next_check = 0.0
        self._fast = 0
        self._thread: threading.Thread | None = None

    @property
    def waiting_from(self) -> int | None:
        """The Raft index its blocking query waits from, None while it checks."""
        with self._cond:
            return self._index if self._waking and not self._again else None

    def signal(self, key: str, seen: int, since: int) -> KeyWatch | SharedWait:
        """Fires once ``key``'s ModifyIndex is no longer ``seen`` (0: absent), armed by
        a read at Raft index ``since``: a :class:`KeyWatch` while fewer than FAST_WAITS
        of them are open, else :meth:`watch`."""
        with self._cond:
            fast = self._fast < FAST_WAITS
            self._fast += fast
        if fast:
            return KeyWatch(self.client, key, since, on_close=self._fast_closed).start()
        return self.watch(key, seen, since)

    def _fast_closed(self) -> None:
        with self._cond:
            self._fast -= 1

    def guard(self, key: str, session: str, since: int, lost: Callable[[], None]) -> Watched:
        """Calls ``lost()`` once ``key`` is no longer held by ``session``."""
        return self._add(Watched(key, since, session=session, lost=lost))

    def watch(self, key: str, seen: int, since: int) -> SharedWait:
        """A Signal that fires once ``key``'s ModifyIndex is no longer ``seen``."""
        return SharedWait(self, self._add(Watched(key, since, seen)))

    def drop(self, entry: Watched) -> None:
        """Stops checking ``entry`` (idempotent); the last one ends the blocking query."""
        with self._cond:
            self._entries.discard(entry)
            self._idle()

    def drop_guards(self) -> None:
        """Stops every guard (the session is being closed)."""
        with self._cond:
            self._entries = {e for e in self._entries if e.lost is None}
            self._idle()

    def _idle(self) -> None:
        """With nothing left to watch, no query stays open (it would cost a request per
        BLOCK_WAIT and wake the thread on every change in the folder)."""
        if not self._entries and self._waking:
            self._query.abort()

    def close(self) -> None:
        """Ends the thread at once; waits still kept fire."""
        with self._cond:
            self._stop.set()
            entries, self._entries = self._entries, set()
            self._cond.notify_all()
        self._query.abort()
        for entry in entries:
            entry.fired.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _add(self, entry: Watched) -> Watched:
        with self._cond:
            if self._stop.is_set():
                entry.fired.set()
                return entry
            self._entries.add(entry)
            if entry.since <= self._index or not entry.key.startswith(self._folder or "/"):
                self._again = True
                if self._waking:
                    self._query.abort()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="tenure-consul-watcher")
                self._thread.start()
            if not self._pausing:  # else it reads the entries when its pause ends
                self._cond.notify_all()
        return entry

    def prewake(self) -> None:
        """Wakes the idle thread ahead of a :meth:`guard` that may follow: called once a
        lock request is sent, so that the wake-up overlaps the agent's work and the
        guard, added during the thread's START_PAUSE, wakes nothing on the winner's
        path. Without a guard after it, it costs one wake-up of the thread.

        Sent while the thread is already in a pause (an earlier campaign's, less than
        START_PAUSE ago: back-to-back campaigns), it is remembered: if that pause ends
        before the guard comes, with nothing to watch, the thread pauses again instead
        of going idle -- else the guard's ``notify`` would wake it on the winner's way
        back, the GIL contention the pause is there to avoid."""
        with self._cond:
            if self._entries or self._thread is None or self._stop.is_set():
                return
            self._prewoken = True
            if not self._pausing:  # else the pause's end sees ``_prewoken``
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                woken = False
                while not self._stop.is_set() and not self._entries and not self._prewoken:
                    woken = True
                    self._cond.wait()
                if self._stop.is_set():
                    return
                # prewoken with nothing watched yet: a guard may follow (pause again,
                # also right after a pause); with an entry already there, no pause
                woken = woken or (self._prewoken and not self._entries)
                self._prewoken = False
                self._pausing = woken
            if woken:
                # Most often the guard of a campaign that just won, still on its way back
                # to its caller: this thread's first query (a connection, ~0.1 ms of
                # Python) would compete with it for the GIL (0.1-0.3 ms on that path,
                # measured). Nothing is missed meanwhile: the query goes out from the
                # index that armed the entry.
                self._stop.wait(START_PAUSE)
                with self._cond:
                    self._pausing = False
                continue
            with self._cond:
                if not self._entries or self._stop.is_set():
                    continue  # all dropped meanwhile: wait again
                alone = next(iter(self._entries)) if len(self._entries) == 1 else None
                where = folder(e.key for e in self._entries) if alone is None else alone.key
                if where != self._folder:  # from index 0: it returns at once, then a check
                    self._folder, self._index, self._again = where, 0, False
                if alone is not None and alone.since > self._index:
                    # One key alone is watched itself, from the index that armed it: its
                    # state there is known, so no check is due (and changes beside it,
                    # such as its election's queue, do not wake the watcher).
                    self._index, self._again = alone.since, False
                due, index = self._again, self._index
                self._waking = not due
                if not due:
                    self._query.arm()
            if not due:
                try:
                    found = (self._query.get(where[:-1], {"keys": "", "separator": "/"}, index)
                             if where.endswith("/") else self._query.get(where, {}, index))
                except HTTP_ERRORS as exc:
                    log.debug("blocking query on %s failed: %s", where, exc)
                    self.client.move_on()
                    self._stop.wait(ERROR_PAUSE)
                    found = -1
                finally:
                    with self._cond:
                        self._waking = False
                if found is None or found == index:
                    continue  # aborted (a key to check, closing) or the wait ended
                with self._cond:
                    if found >= 0 and where == self._folder:
                        self._index = found  # one that went back is simply followed
            self._stop.wait(max(0.0, self._next_check - time.monotonic()))
            self._check(where)

    def _check(self, where: str) -> None:
        with self._cond:  # keys beyond `where` (kept since) wait for the next folder
            batch = [e for e in self._entries if e.key.startswith(where)]
            self._again = len(batch) < len(self._entries)
        if not batch or self._stop.is_set():
            return
        started = time.monotonic()
        failed = False
        try:
            if len(batch) <= TXN_OPS:
                errors = self.client.txn([e.check() for e in batch], read=True)[1]
                if any("Permission denied" in error for error in errors):
                    raise StoreUnavailable(f"Consul refused a check: {errors}")
                changed = [e for e, error in zip(batch, errors, strict=False) if error]
            else:
                by_key = {entry["Key"]: entry
                          for entry in self.client.get(where, recurse="")[1] or []}
                changed = [e for e in batch if not e.unchanged(by_key.get(e.key))]
        except Exception as exc:  # the thread must live on: it guards every leadership
            if not isinstance(exc, (*HTTP_ERRORS, ConfigError)):
                log.exception("unexpected failure checking %d Consul keys", len(batch))
            log.debug("check of %d keys failed: %s", len(batch), exc)
            changed, failed = [e for e in batch if e.lost is None], True
        self.checks += 1
        spent = time.monotonic() - started
        self._next_check = time.monotonic() + spent * (1 / CHECK_SHARE - 1)
        with self._cond:
            changed = [e for e in changed if e in self._entries]  # not dropped meanwhile
            self._entries.difference_update(changed)
        for entry in changed:
            entry.fired.set()
            if entry.lost is not None:
                try:
                    entry.lost()
                except Exception:
                    log.exception("reporting a lost Consul leader key failed")
        if failed:
            self._stop.wait(ERROR_PAUSE)
