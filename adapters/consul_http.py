"""HTTP to Consul for :mod:`tenure.adapters.consul`: what py-consul's API does not offer.

:class:`ConsulHTTP` sends requests through py-consul's HTTP client (its requests
session) to the first agent that can be connected to, with a per-call timeout, the ACL
token on every request (py-consul's Txn sends none) and tenure's error mapping: 5xx,
429 and timeouts are StoreUnavailable, 401/403 a ConfigError. :class:`KeyWatch` is a
blocking query (``?index=&wait=``) on one key in a helper thread, on a connection of
its own so that :meth:`KeyWatch.close` can abort it at once (py-consul's cannot be).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import consul
import requests

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


class ConsulHTTP:
    """Requests to a list of Consul agents (see the module docstring)."""

    def __init__(self, hosts: tuple[tuple[str, int], ...], *, scheme: str, ca: str | None,
                 dc: str | None, timeout: float, token: str | None, description: str) -> None:
        self.hosts = hosts
        self.dc = dc
        self.timeout = timeout
        self.description = description
        self.headers = {"X-Consul-Token": token} if token else {}
        self._agents = [consul.Consul(host=host, port=port, scheme=scheme, verify=ca or True,
                                      dc=dc, connections_timeout=timeout).http
                        for host, port in hosts]
        self._ssl = ssl.create_default_context(cafile=ca) if scheme == "https" else None
        self.current = 0
        """Index of the agent in use (moved on by failures)."""

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
        failures = []
        for attempt in range(len(self._agents)):
            index = (self.current + attempt) % len(self._agents)
            agent = self._agents[index]
            where = f"Consul {agent.host}:{agent.port}"
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
            text = response.text.strip()[:200]
            if response.status_code == 429 or (  # 429: e.g. http_max_conns_per_client
                    response.status_code >= 500 and "Invalid Session TTL" not in text):
                raise StoreUnavailable(f"{where} failed {method} {path}: "
                                       f"{response.status_code} {text}")
            if response.status_code in (401, 403):
                raise ConfigError(f"Consul refused {method} {path} ({response.status_code} "
                                  f"{text}); give an ACL token with key and session write "
                                  f"rights via token_file= or ${TOKEN_ENV}")
            return response
        raise StoreUnavailable(f"cannot reach Consul at {self.description}: "
                               + "; ".join(failures))

    def txn(self, ops: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Runs a transaction; returns (results, []) if it committed, else ([], errors)
        with errors[i] the failure of operation i ("" for operations that passed)."""
        response = self.call("PUT", "/v1/txn", body=[{"KV": op} for op in ops])
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

    def connect(self) -> http.client.HTTPConnection:
        """A new connection to the current agent, for one blocking query."""
        host, port = self.hosts[self.current]
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def close(self) -> None:
        """Closes the agents' connections."""
        for agent in self._agents:
            agent.session.close()


class KeyWatch(Signal):
    """Fires once ``key`` changes after ``index``: a Consul blocking query in a helper
    thread, sent again every BLOCK_WAIT s while the index stays; a failed query fires
    after ERROR_PAUSE. :meth:`close` aborts the query's connection at once."""

    def __init__(self, client: ConsulHTTP, key: str, index: int) -> None:
        self.client = client
        self.key = key
        self.index = index
        self.fired = threading.Event()
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None

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
        with self._lock:
            connection, self._connection = self._connection, None
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the recv; SSLSocket's would drop TLS
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

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
        connection = self.client.connect()
        with self._lock:
            if self.closed.is_set():
                return self.index
            self._connection = connection
        try:
            connection.connect()
            with self._lock:  # closed while connecting: close() found no socket to end
                if self.closed.is_set():
                    return self.index
            assert connection.sock is not None
            connection.sock.settimeout(BLOCK_WAIT * 17 / 16 + self.client.timeout)
            params = self.client.params({"index": str(max(1, self.index)),
                                        "wait": f"{BLOCK_WAIT}s"})
            connection.request("GET", f"/v1/kv/{quote(self.key, safe='/~')}?{urlencode(params)}",
                               headers=self.client.headers)
            response = connection.getresponse()
            response.read()
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        if response.status not in (200, 404):
            raise StoreUnavailable(f"Consul blocking query on {self.key!r}: {response.status}")
        return int(response.getheader("X-Consul-Index") or "0")


class KeyGuard(KeyWatch):
    """Calls ``lost()`` once a consistent read shows ``key`` no longer held by
    ``session``; between reads, blocking queries wait for the key's next change. Store
    errors are retried after ERROR_PAUSE; :meth:`close` ends it at once."""

    def __init__(self, client: ConsulHTTP, key: str, session: str,
                 lost: Callable[[], None]) -> None:
        super().__init__(client, key, 0)
        self.session = session
        self.lost = lost

    def _run(self) -> None:
        while not self.closed.is_set():
            try:
                self.index, entries = self.client.get(self.key)
                if not entries or entries[0].get("Session") != self.session:
                    if not self.closed.is_set():
                        self.lost()
                    return
                while not self.closed.is_set() and self.query() == self.index:
                    pass
            except HTTP_ERRORS as exc:
                log.debug("leadership guard on %s: %s", self.key, exc)
                self.closed.wait(ERROR_PAUSE)
