"""HTTP to Consul for :mod:`tenure.adapters.consul`: what py-consul's API does not offer.

:class:`ConsulHTTP` sends requests through py-consul's HTTP client (its requests
session) to the first agent that can be connected to, with a per-call timeout, the ACL
token on every request (py-consul's Txn sends none) and tenure's error mapping: 5xx,
429 and timeouts are StoreUnavailable, 401/403 a ConfigError. Connections are bounded:
at most POOL_SIZE per agent for ordinary requests (more callers wait for a free one)
plus one for session renewals, which so never queue behind them (:class:`RenewalLine`,
a keep-alive connection of its own). ``sent`` counts every request, blocking queries
and renewals included.

Two ways to wait for a change, both blocking queries (``?index=&wait=``) on a
connection of their own so that they can be aborted at once (py-consul's cannot be):

* :class:`KeyWatch`: one key, one helper thread; the fast lane of a few waiters;
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
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import consul
import requests
from requests.adapters import HTTPAdapter

from tenure.errors import ConfigError, StoreUnavailable
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
FAST_WAITS = 16
"""Waits of one client that get a blocking query (a :class:`KeyWatch`: thread and
connection) of their own; the rest share its :class:`Watcher` (one read more per change)."""


class ConsulHTTP:
    """Requests to a list of Consul agents (see the module docstring)."""

    def __init__(self, hosts: tuple[tuple[str, int], ...], *, scheme: str, ca: str | None,
                 dc: str | None, timeout: float, token: str | None, description: str) -> None:
        self.hosts = hosts
        self.dc = dc
        self.timeout = timeout
        self.description = description
        self.headers = {"X-Consul-Token": token} if token else {}
        self._agents = [self._agent(host, port, scheme, ca, POOL_SIZE) for host, port in hosts]
        self._ssl = ssl.create_default_context(cafile=ca) if scheme == "https" else None
        self._renewals = RenewalLine(self)
        self._count = threading.Lock()
        self.sent = 0
        """Requests sent so far (blocking queries included)."""
        self.current = 0
        """Index of the agent in use (moved on by failures)."""

    def _agent(self, host: str, port: int, scheme: str, ca: str | None,
               size: int) -> Any:
        agent = consul.Consul(host=host, port=port, scheme=scheme, verify=ca or True,
                              dc=self.dc, connections_timeout=self.timeout).http
        pool = HTTPAdapter(pool_connections=1, pool_maxsize=size, pool_block=True)
        agent.session.mount("http://", pool)
        agent.session.mount("https://", pool)
        return agent

    def count(self) -> None:
        """Counts one request sent (see :attr:`sent`)."""
        with self._count:
            self.sent += 1

    def params(self, extra: dict[str, str]) -> dict[str, str]:
        """Query parameters with the datacenter, if one is set."""
        return {**extra, "dc": self.dc} if self.dc else extra

    def move_on(self) -> None:
        """Uses the next agent from now on (the current one failed)."""
        self.current = (self.current + 1) % len(self.hosts)

    def call(self, method: str, path: str, params: dict[str, str] | None = None,
             body: object = None, timeout: float | None = None) -> requests.Response:
        """One request to the current agent, moving on to the next ones while an agent
        cannot be connected to. 5xx, 429 and read timeouts are StoreUnavailable."""
        data = None if body is None else json.dumps(body)
        limit = timeout or self.timeout
        agents = self._agents
        failures = []
        for attempt in range(len(agents)):
            index = (self.current + attempt) % len(agents)
            agent = agents[index]
            where = f"Consul {agent.host}:{agent.port}"
            self.count()
            try:
                response: requests.Response = agent.session.request(
                    method, agent.uri(path), params=self.params(params or {}), data=data,
                    headers=self.headers, verify=agent.verify, timeout=limit)
            except requests.ConnectionError as exc:
                failures.append(f"{agent.host}:{agent.port}: {type(exc).__name__}")
                continue
            except requests.RequestException as exc:
                self.current = index
                self.move_on()
                raise StoreUnavailable(f"{where} did not answer {method} {path} within "
                                       f"{limit:g} s ({type(exc).__name__})") from None
            self.current = index
            self.refuse(where, method, path, response.status_code, response.text)
            return response
        raise StoreUnavailable(f"cannot reach Consul at {self.description}: "
                               + "; ".join(failures))

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
            ) -> tuple[list[dict[str, Any]], list[str]]:
        """Runs a transaction (``read``: checks and gets only, answered ``?consistent``);
        returns (results, []) if it committed, else ([], errors) with errors[i] the
        failure of operation i ("" for operations that passed)."""
        response = self.call("PUT", "/v1/txn", {"consistent": ""} if read else None,
                             body=[{"KV": op} for op in ops])
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

    def connect(self, agent: int | None = None) -> http.client.HTTPConnection:
        """A new connection to the current agent (or agent number ``agent``), for one
        blocking query or the renewals."""
        host, port = self.hosts[self.current if agent is None else agent]
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def close(self) -> None:
        """Closes the agents' connections."""
        for agent in self._agents:
            agent.session.close()
        self._renewals.close()


class RenewalLine:
    """The session renewals' keep-alive connection to the current agent.

    Hand-written on http.client, not py-consul's requests session: a renewal goes out
    every lifetime/3 (a sixth of the TTL), and requests spends about 1 ms of CPU on each
    (proxy and netrc look-ups in the environment, cookie and settings merges) against
    0.2 ms here -- most of an idle client's CPU. Like :meth:`ConsulHTTP.call` it moves on
    to the next agent while one cannot be connected to; a kept connection the agent
    closed meanwhile is opened again once (a renewal is idempotent). One caller at a
    time (the session keeper's renewer); a lock keeps :meth:`close` apart."""

    def __init__(self, client: ConsulHTTP) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._agent = -1

    def put(self, path: str, timeout: float) -> tuple[int, str]:
        client = self.client
        failures = []
        with self._lock:
            for attempt in range(len(client.hosts)):
                index = (client.current + attempt) % len(client.hosts)
                host, port = client.hosts[index]
                where = f"Consul {host}:{port}"
                try:
                    status, body = self._send(index, path, timeout)
                except (ConnectionRefusedError, socket.gaierror, ssl.SSLError) as exc:
                    self._drop()
                    failures.append(f"{host}:{port}: {type(exc).__name__}")
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    client.current = index
                    client.move_on()
                    raise StoreUnavailable(f"{where} did not answer PUT {path} within "
                                           f"{timeout:g} s ({type(exc).__name__})") from None
                client.current = index
                client.refuse(where, "PUT", path, status, body)
                return status, body
        raise StoreUnavailable(f"cannot reach Consul at {client.description}: "
                               + "; ".join(failures))

    def _send(self, index: int, path: str, timeout: float) -> tuple[int, str]:
        reused = self._connection is not None and self._agent == index
        if not reused:
            self._drop()
            self._connection, self._agent = self.client.connect(index), index
        try:
            return self._exchange(path, timeout)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
        self._drop()  # the agent closed the kept connection: once more on a new one
        self._connection = self.client.connect(index)
        return self._exchange(path, timeout)

    def _exchange(self, path: str, timeout: float) -> tuple[int, str]:
        connection = self._connection
        assert connection is not None
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        query = urlencode(self.client.params({}))
        self.client.count()
        connection.request("PUT", f"{path}?{query}" if query else path,
                           headers=self.client.headers)
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        if response.will_close:
            self._drop()
        return response.status, body

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def close(self) -> None:
        """Closes the kept connection (a renewal after it opens a new one)."""
        with self._lock:
            self._drop()


class BlockingQuery:
    """One blocking GET at a time, each on a new connection; :meth:`abort` ends the one
    in flight (or the next one) at once."""

    def __init__(self, client: ConsulHTTP) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._aborted = False
        self._connection: http.client.HTTPConnection | None = None

    def arm(self) -> None:
        """Lets the next :meth:`get` run (after an :meth:`abort`)."""
        with self._lock:
            self._aborted = False

    def abort(self) -> None:
        """Ends the query in flight; :meth:`get` returns None until :meth:`arm`."""
        with self._lock:
            self._aborted = True
            connection, self._connection = self._connection, None
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the recv; SSLSocket's would drop TLS
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def get(self, path: str, params: dict[str, str], index: int) -> int | None:
        """Blocks until ``path``'s index moves past ``index`` or BLOCK_WAIT passes;
        returns the index then, or None if aborted."""
        connection = self.client.connect()
        with self._lock:
            if self._aborted:
                return None
            self._connection = connection
        try:
            connection.connect()
            with self._lock:  # aborted while connecting: abort() found no socket to end
                if self._aborted:
                    return None
            assert connection.sock is not None
            connection.sock.settimeout(BLOCK_WAIT * 17 / 16 + self.client.timeout)
            query = self.client.params({**params, "index": str(max(1, index)),
                                        "wait": f"{BLOCK_WAIT}s"})
            self.client.count()
            connection.request("GET", f"/v1/kv/{quote(path, safe='/~')}?{urlencode(query)}",
                               headers=self.client.headers)
            response = connection.getresponse()
            response.read()
        except HTTP_ERRORS:
            with self._lock:
                if self._aborted:
                    return None
            raise
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        if response.status not in (200, 404):
            raise StoreUnavailable(f"Consul blocking query on {path!r}: {response.status}")
        return int(response.getheader("X-Consul-Index") or "0")


class KeyWatch(Signal):
    """Fires once ``key`` changes after ``index``: a Consul blocking query in a helper
    thread, sent again every BLOCK_WAIT s while the index stays; a failed query fires
    after ERROR_PAUSE. :meth:`close` aborts the query's connection at once and calls
    ``on_close`` (once)."""

    def __init__(self, client: ConsulHTTP, key: str, index: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self.client = client
        self.key = key
        self.index = index
        self.fired = threading.Event()
        self.closed = threading.Event()
        self._query = BlockingQuery(client)
        self._on_close = on_close

    def start(self) -> KeyWatch:
        """Runs the queries in a helper thread (:attr:`thread`)."""
        self.thread = threading.Thread(target=self._run, name="tenure-consul-watch",
                                       daemon=True)
        self.thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        return self.fired.wait(max(0.0, timeout))

    def close(self) -> None:
        self.closed.set()
        self._query.abort()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _run(self) -> None:
        try:
            while not self.closed.is_set() and self.query() == self.index:
                pass
        except HTTP_ERRORS as exc:
            if not self.closed.is_set():
                log.debug("blocking query on %s failed: %s", self.key, exc)
                self.client.move_on()
                self.closed.wait(ERROR_PAUSE)
        self.fired.set()

    def query(self) -> int:
        """One blocking query from :attr:`index`; the key's index when it returns."""
        found = self._query.get(self.key, {}, self.index)
        return self.index if found is None else found


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

    def __init__(self, watcher: Watcher, entry: Watched) -> None:
        self.watcher = watcher
        self.entry = entry

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
    it too). After each change it checks, in ONE consistent read, every key it keeps:
    a read-only transaction of ``check-session``/``check-index`` operations while there
    are at most TXN_OPS of them (O(those keys)), else a recursive read of ``F/``
    (O(every key under it)). Consul offers no narrower read: it indexes keys by
    session, but no HTTP query returns the keys a session holds, and a marker key per
    session would show the session's end, not a leader key deleted by an operator.
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
        """Stops checking ``entry`` (idempotent)."""
        with self._cond:
            self._entries.discard(entry)

    def drop_guards(self) -> None:
        """Stops every guard (the session is being closed)."""
        with self._cond:
            self._entries = {e for e in self._entries if e.lost is None}

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
            self._cond.notify_all()
        return entry

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set() and not self._entries:
                    self._cond.wait()
                if self._stop.is_set():
                    return
                where = folder(e.key for e in self._entries)
                if where != self._folder:  # from index 0: it returns at once, then a check
                    self._folder, self._index, self._again = where, 0, False
                due, index = self._again, self._index
                self._waking = not due
                if not due:
                    self._query.arm()
            if not due:
                try:
                    found = self._query.get(where[:-1], {"keys": "", "separator": "/"}, index)
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
