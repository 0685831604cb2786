"""The Consul backend: ``consul://host:port[,host:port...][?options]``, Consul 1.14+.

Mapping of the contract:

* session: ONE Consul session per Store, ``Behavior=delete``, ``TTL`` = tenure's TTL,
  ``LockDelay`` = the ``lock_delay`` option (default 0) and NO health checks
  (``NodeChecks: []``): only its TTL can end it, so an agent stopped or a node marked
  unhealthy cannot free a leader's key before the leader's own validity deadline.
  ``delete`` (not ``release``) so that a dead client's keys vanish: its leader key is
  freed and its queue entry no longer blocks the queue. Renewal is
  ``PUT /v1/session/renew/<id>`` (404 -> SessionExpired); Consul never revives a
  destroyed session;
* queue: one key per candidate, ``<prefix>/<election>/~queue/<uuid>``, acquired with
  the session (so it dies with it) and ordered by its ``CreateIndex`` (Raft order).
  Each waiter blocking-queries only its predecessor's key (no herd). The entry holds
  the candidate id and value, which ``contenders()`` lists;
* leadership: the first in the queue acquires ``<prefix>/<election>/~leader`` with the
  session in a transaction that also checks its own queue key. The fencing token is
  the Raft index of that acquisition (the key's ``ModifyIndex`` then), which rises
  across key deletion and recreation (``LockIndex`` does not). ``proclaim`` rewrites
  the value with the token inside it, so the token never changes while one leads;
* decisions: the queue is read with ``?consistent``; acquisition, proclaim, guarded
  writes and withdrawals are transactions (``/v1/txn``) with ``check-session`` on both
  the leader key and the ticket's own queue key, so a stale ticket of the same client
  can never touch a newer leadership; guarded data lives under ``<prefix>/data/``;
* notifications: blocking queries (``?index=..&wait=..``). They run on their own
  connection, polled with ``select`` every ``WAIT_SLICE`` so cancel and deadlines are
  honoured at once; a watcher per held leadership reports a taken key as a loss.

Clock reasoning: a renewal sent at ``t`` resets the session timer to TTL on the server
after ``t``, and Consul invalidates only after 2 x TTL, so the core's deadline
``t + TTL x (1 - drift)`` ends first. Consul resets session timers on its own leader
failover (consul#524): this only delays expiry, never hastens it, so safety holds; a
successor may wait longer. With ``lock_delay`` = 0 nothing else is needed, because
without health checks a session can only end by its TTL (after the deadline) or by
its owner. Why connections are raw HTTP over py-consul's requests session rather
than its API: py-consul refuses TTLs under 10 s, its Txn sends no ACL token, it takes
no per-call timeout, and its blocking queries cannot be interrupted.

Limits: Consul's server accepts TTLs in [session_ttl_min (default 10 s), 24 h]; a TTL
under the server's floor fails at the first campaign with a ConfigError. A dead
client's leader key is freed only 2 x TTL (+ lock_delay) after its last renewal.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import select
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import consul
import requests

from tenure.config import BackendURL, parse_duration_option
from tenure.errors import (
    CampaignCancelled,
    CampaignTimeout,
    ConfigError,
    NotLeader,
    SessionExpired,
    StoreUnavailable,
)
from tenure.store import WAIT_SLICE, Contender, LeaderInfo, Store, StoreLimits, Ticket

log = logging.getLogger("tenure.consul")

OPTIONS = ("lock_delay", "dc", "token_file", "prefix", "scheme", "ca", "timeout")
TOKEN_ENV = ("TENURE_CONSUL_TOKEN", "CONSUL_HTTP_TOKEN")
DEFAULT_TIMEOUT = 5.0
MAX_LOCK_DELAY = 60.0
BLOCK_WAIT = 30
"""Seconds a blocking query may wait on the server (it is abandoned earlier on cancel)."""

_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_DC = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class _Options:
    scheme: str = "http"
    ca: str | None = None
    dc: str | None = None
    prefix: str = "tenure"
    lock_delay: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    token: str | None = field(default=None, repr=False)


def _read_token(options: dict[str, str]) -> str | None:
    path = options.get("token_file")
    if path is not None:
        try:
            token = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"consul option token_file={path!r} cannot be read ({exc.strerror}); "
                "give a readable file holding the ACL token"
            ) from None
        if not token:
            raise ConfigError(f"consul token_file {path!r} is empty; put the ACL token in it")
        return token
    for name in TOKEN_ENV:
        if os.environ.get(name):
            return os.environ[name].strip()
    return None


def parse_options(url: BackendURL) -> _Options:
    """Validates every option of a ``consul://`` URL (ConfigError naming a bad one)."""
    given = dict(url.options)
    if url.username is not None or url.password is not None:
        raise ConfigError(
            "consul URLs take no user or password; give the ACL token in a file "
            "(token_file=PATH, in the URL or in tenure.toml [options]) or in "
            "TENURE_CONSUL_TOKEN / CONSUL_HTTP_TOKEN"
        )
    if url.path not in ("", "/"):
        raise ConfigError(
            f"consul URL path {url.path!r} is not used; choose the key prefix with "
            "?prefix=NAME instead"
        )
    if "token" in given:
        raise ConfigError(
            "consul option 'token' is not accepted (a token in a URL ends up in argv and "
            "logs); use token_file=PATH or TENURE_CONSUL_TOKEN / CONSUL_HTTP_TOKEN"
        )
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for the consul backend; known options "
            f"are ttl, drift, {', '.join(OPTIONS)}"
        )
    scheme = given.get("scheme", "http")
    if scheme not in ("http", "https"):
        raise ConfigError(f"consul option scheme={scheme!r} must be http or https")
    ca = given.get("ca")
    if ca is not None:
        if scheme != "https":
            raise ConfigError("consul option ca= needs scheme=https")
        if not Path(ca).expanduser().is_file():
            raise ConfigError(f"consul option ca={ca!r}: no such file; give a CA bundle path")
        ca = str(Path(ca).expanduser())
    dc = given.get("dc")
    if dc is not None and not _DC.fullmatch(dc):
        raise ConfigError(f"consul option dc={dc!r} must be a datacenter name [A-Za-z0-9_-]")
    prefix = given.get("prefix", "tenure")
    if not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ConfigError(
            f"consul option prefix={prefix!r} must be a key path of [A-Za-z0-9._-] segments "
            "joined by '/', without leading or trailing '/', e.g. prefix=apps/tenure"
        )
    lock_delay = parse_duration_option(
        "consul", "lock_delay", given.get("lock_delay", "0"), 0.0, MAX_LOCK_DELAY, allow_zero=True
    )
    timeout = parse_duration_option(
        "consul", "timeout", given.get("timeout", str(DEFAULT_TIMEOUT)), 0.1, 300.0,
        allow_zero=True,
    )
    return _Options(scheme, ca, dc, prefix, lock_delay, timeout, _read_token(given))


def _segment(part: str) -> str:
    # Consul's HTTP router cleans "/./" out of paths; names may have "." segments.
    return "~dot" if part == "." else part


class ConsulStore(Store):
    """The contract over a Consul cluster (any of its agents or servers).

    ``consul://127.0.0.1:8500?lock_delay=0`` -- see the module docstring."""

    limits = StoreLimits(min_ttl=1.0, max_ttl=86400.0)

    def __init__(self, hosts: tuple[tuple[str, int], ...], options: _Options,
                 description: str) -> None:
        super().__init__()
        self._hosts = hosts
        self._options = options
        self._description = description
        verify: bool | str = options.ca or True
        self._agents = []
        for host, port in hosts:
            agent = consul.Consul(host=host, port=port, scheme=options.scheme, verify=verify,
                                  dc=options.dc, connections_timeout=options.timeout)
            agent.token = options.token  # py-consul would let CONSUL_HTTP_TOKEN win
            self._agents.append(agent)
        self._headers = {"X-Consul-Token": options.token} if options.token else {}
        self._ssl = (ssl.create_default_context(cafile=options.ca)
                     if options.scheme == "https" else None)
        self._current = 0
        self._session = ""
        self._ttl = 0.0
        self._session_changed = threading.Condition()
        self._closed = threading.Event()
        self._watchers: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: BackendURL) -> ConsulStore:
        options = parse_options(url)
        store = cls(url.hosts, options, url.redacted)
        try:
            store._call("GET", "/v1/status/leader")
        except StoreUnavailable:
            store.close()
            raise
        return store

    @property
    def description(self) -> str:
        return self._description

    # -- keys -----------------------------------------------------------------------

    def _election_key(self, election: str) -> str:
        return "/".join([self._options.prefix, *map(_segment, election.split("/"))])

    def _leader_key(self, election: str) -> str:
        return self._election_key(election) + "/~leader"

    def _queue_prefix(self, election: str) -> str:
        return self._election_key(election) + "/~queue/"

    def _data_key(self, key: str) -> str:
        return "/".join([self._options.prefix, "data", *map(_segment, key.split("/"))])

    # -- HTTP -----------------------------------------------------------------------

    def _params(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        params = dict(extra or {})
        if self._options.dc:
            params["dc"] = self._options.dc
        return params

    def _call(self, method: str, path: str, params: dict[str, str] | None = None,
              body: object = None, timeout: float | None = None) -> requests.Response:
        """One request to the current agent, moving on to the next ones while an agent
        cannot be connected to. 5xx answers and read timeouts are StoreUnavailable."""
        data = None if body is None else json.dumps(body)
        limit = timeout or self._options.timeout
        failures = []
        for attempt in range(len(self._agents)):
            index = (self._current + attempt) % len(self._agents)
            agent = self._agents[index]
            url = agent.http.uri(path)
            try:
                response: requests.Response = agent.http.session.request(
                    method, url, params=self._params(params), data=data,
                    headers=self._headers, verify=agent.http.verify, timeout=limit,
                )
            except requests.ConnectionError as exc:
                failures.append(f"{agent.http.host}:{agent.http.port}: {type(exc).__name__}")
                continue
            except requests.RequestException as exc:
                self._current = (index + 1) % len(self._agents)
                raise StoreUnavailable(
                    f"Consul {agent.http.host}:{agent.http.port} did not answer {method} "
                    f"{path} within {limit:g} s ({type(exc).__name__})"
                ) from None
            self._current = index
            overloaded = response.status_code == 429  # e.g. http_max_conns_per_client
            if overloaded or (response.status_code >= 500
                              and "Invalid Session TTL" not in response.text):
                raise StoreUnavailable(
                    f"Consul {agent.http.host}:{agent.http.port} failed {method} {path}: "
                    f"{response.status_code} {response.text.strip()[:200]}"
                )
            if response.status_code in (401, 403):
                raise ConfigError(
                    f"Consul refused {method} {path} ({response.status_code} "
                    f"{response.text.strip()[:200]}); give an ACL token with key and session "
                    "write rights via token_file= or TENURE_CONSUL_TOKEN"
                )
            return response
        raise StoreUnavailable(f"cannot reach Consul at {self._description}: "
                               + "; ".join(failures))

    def _txn(self, ops: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Runs a transaction; returns (results, []) if it committed, else ([], errors)
        with errors[i] the failure of operation i ("" for operations that passed)."""
        response = self._call("PUT", "/v1/txn", body=[{"KV": op} for op in ops])
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

    def _get(self, key: str, **params: str) -> tuple[int, int, Any]:
        """A consistent read: (status, X-Consul-Index, decoded JSON or None)."""
        response = self._call("GET", f"/v1/kv/{key}", {"consistent": "", **params})
        if response.status_code not in (200, 404):
            raise StoreUnavailable(f"Consul read of {key!r} failed: {response.status_code}")
        index = int(response.headers.get("X-Consul-Index", "0"))
        return response.status_code, index, response.json() if response.status_code == 200 \
            else None

    def _block(self, key: str, index: int, deadline: float | None,
               stop: threading.Event) -> tuple[int, int, Any] | None:
        """A blocking query on ``key`` (returns when it changes after ``index``, or after
        BLOCK_WAIT s); None once ``stop`` is set or ``deadline`` passes. Runs on its own
        connection, checked every WAIT_SLICE, and closed when abandoned."""
        host, port = self._hosts[self._current]
        wait = BLOCK_WAIT
        if deadline is not None:
            wait = max(1, min(BLOCK_WAIT, int(deadline - time.monotonic()) + 1))
        query = urlencode(self._params({"index": str(max(1, index)), "wait": f"{wait}s"}))
        limit = self._options.timeout
        connection: http.client.HTTPConnection
        if self._ssl is not None:
            connection = http.client.HTTPSConnection(host, port, timeout=limit,
                                                     context=self._ssl)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=limit)
        give_up = time.monotonic() + wait * 17 / 16 + limit
        try:
            connection.request("GET", f"/v1/kv/{quote(key, safe='/~')}?{query}",
                               headers=self._headers)
            sock = connection.sock
            assert sock is not None
            while True:
                if stop.is_set() or self._closed.is_set():
                    return None
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return None
                if now >= give_up:
                    raise StoreUnavailable(f"Consul blocking query on {key!r} got no answer")
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if pending or select.select([sock], [], [], WAIT_SLICE)[0]:
                    break
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._current = (self._current + 1) % len(self._hosts)
            raise StoreUnavailable(f"Consul {host}:{port}: blocking query failed: {exc}") \
                from None
        finally:
            connection.close()
        if response.status not in (200, 404):
            raise StoreUnavailable(f"Consul blocking query on {key!r}: {response.status}")
        new_index = int(response.getheader("X-Consul-Index") or "0")
        return response.status, new_index, json.loads(body) if response.status == 200 else None

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> None:
        body = {
            "Name": "tenure",
            "TTL": f"{round(ttl * 1000)}ms",
            "LockDelay": f"{round(self._options.lock_delay * 1000)}ms",
            "Behavior": "delete",
            "NodeChecks": [],
            "ServiceChecks": [],
        }
        response = self._call("PUT", "/v1/session/create", body=body)
        if "Invalid Session TTL" in response.text:
            raise ConfigError(
                f"Consul rejected the session TTL {ttl:g} s: {response.text.strip()!r}; "
                "choose a TTL in that range, or lower session_ttl_min in the Consul "
                "servers' configuration (default 10s)"
            )
        if response.status_code != 200:
            raise StoreUnavailable(
                f"Consul could not create a session: {response.status_code} "
                f"{response.text.strip()[:200]}"
            )
        self._ttl = ttl
        with self._session_changed:
            self._session = str(response.json()["ID"])
            self._session_changed.notify_all()

    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        # A hung store must not hold the renewer past a third of the TTL.
        response = self._call("PUT", f"/v1/session/renew/{self._session}",
                              timeout=min(self._options.timeout, max(0.1, self._ttl / 3)))
        if response.status_code == 404 or (response.status_code == 200
                                           and not response.json()):
            raise SessionExpired(f"Consul session {self._session} expired or was destroyed")
        if response.status_code != 200:
            raise StoreUnavailable(f"Consul session renewal failed: {response.status_code} "
                                   f"{response.text.strip()[:200]}")
        return frozenset()  # a taken key is reported by the leadership's watcher

    def close_session(self) -> None:
        self._stop_watchers()
        if self._session:
            session, self._session = self._session, ""
            self._call("PUT", f"/v1/session/destroy/{session}")

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        key = self._queue_prefix(election) + uuid.uuid4().hex
        entry = base64.b64encode(json.dumps(  # the value too: contenders() lists it
            {"id": candidate_id, "value": base64.b64encode(value).decode()}).encode()).decode()
        # The core does not retry an enqueue: ride out a Consul leader election here
        # (the same key, so a retried transaction cannot queue twice).
        give_up = time.monotonic() + 2 * self._ttl + self._options.timeout
        backoff = 0.05
        while True:
            session = self._session
            try:
                results, errors = self._txn([{"Verb": "lock", "Key": key,
                                              "Session": session, "Value": entry}])
            except StoreUnavailable:
                if time.monotonic() + backoff >= give_up or self._closed.is_set():
                    raise
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            if not errors:
                return Ticket(election, candidate_id, key, int(results[0]["CreateIndex"]),
                              {"session": session, "value": value})
            # Our session was invalidated and the core has not noticed yet: its renewer
            # learns it within TTL/3 and opens a new one; queue on that one.
            if not self._await_new_session(session):
                raise SessionExpired(f"Consul refused a queue entry ({errors[0]})")

    def _await_new_session(self, old: str) -> bool:
        end = time.monotonic() + self._ttl + self._options.timeout
        with self._session_changed:
            while self._session in (old, "") and not self._closed.is_set():
                if not self._session_changed.wait(min(WAIT_SLICE, end - time.monotonic())) \
                        and time.monotonic() >= end:
                    return False
        return not self._closed.is_set()

    def _guards(self, ticket: Ticket) -> list[dict[str, Any]]:
        session = str(ticket.extra["session"])
        return [{"Verb": "check-session", "Key": ticket.key, "Session": session},
                {"Verb": "check-session", "Key": self._leader_key(ticket.election),
                 "Session": session}]

    def withdraw(self, ticket: Ticket) -> None:
        with self._lock:
            watcher = self._watchers.pop(ticket.key, None)
        if watcher is not None:
            watcher.set()
        leader = self._leader_key(ticket.election)
        _, errors = self._txn([*self._guards(ticket), {"Verb": "delete", "Key": leader},
                               {"Verb": "delete", "Key": ticket.key}])
        if errors:
            self._txn([{"Verb": "delete", "Key": ticket.key}])

    def _queue(self, election: str) -> list[dict[str, Any]]:
        entries = self._get(self._queue_prefix(election), recurse="")[2]
        live = [e for e in entries or [] if e.get("Session")]
        return sorted(live, key=lambda e: int(e["CreateIndex"]))

    def _value(self, ticket: Ticket, token: int | None = None) -> str:
        value = ticket.extra["value"]
        assert isinstance(value, bytes)
        record: dict[str, object] = {"id": ticket.candidate_id,
                                     "value": base64.b64encode(value).decode()}
        if token is not None:
            record["token"] = token
        return base64.b64encode(json.dumps(record).encode()).decode()

    def _turn(self, ticket: Ticket, deadline: float | None,
              cancelled: threading.Event) -> int | None:
        """One step: the token if ``ticket`` now leads, else None after waiting for the
        next change that could make it lead."""
        session = str(ticket.extra["session"])
        queue = self._queue(ticket.election)
        mine = [i for i, e in enumerate(queue) if e["Key"] == ticket.key
                and e["Session"] == session]
        if not mine:
            raise SessionExpired(f"the entry of {ticket.candidate_id} in "
                                 f"{ticket.election!r} died with its session")
        if mine[0] > 0:
            ahead = queue[mine[0] - 1]
            self._block(ahead["Key"], int(ahead["ModifyIndex"]), deadline, cancelled)
            return None
        leader = self._leader_key(ticket.election)
        results, errors = self._txn([
            {"Verb": "check-session", "Key": ticket.key, "Session": session},
            {"Verb": "lock", "Key": leader, "Session": session, "Value": self._value(ticket)},
        ])
        if not errors:
            return int(results[1]["ModifyIndex"])
        if errors[0]:
            raise SessionExpired(f"the entry of {ticket.candidate_id} in "
                                 f"{ticket.election!r} is gone ({errors[0]})")
        if "lock delay" in errors[1]:
            # Consul tells no end time: retry soon (lock-delay is at most 60 s).
            _sleep(0.1, deadline, cancelled)
            return None
        status, index, _ = self._get(leader)
        if status == 200:  # held by a session not in our queue: wait for it to change
            self._block(leader, index, deadline, cancelled)
        return None

    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        backoff = 0.05
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in {ticket.election!r} cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise CampaignTimeout(f"campaign in {ticket.election!r} timed out")
            try:
                token = self._turn(ticket, deadline, cancelled)
            except SessionExpired:
                raise
            except StoreUnavailable as exc:
                log.warning("campaign in %s: %s (retrying)", ticket.election, exc)
                _sleep(backoff, deadline, cancelled)
                backoff = min(1.0, backoff * 2)
                continue
            backoff = 0.05
            if token is not None:
                ticket.extra["token"] = token
                self._watch(ticket)
                return token

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        proposed = dict(ticket.extra, value=value)
        record = Ticket(ticket.election, ticket.candidate_id, ticket.key, ticket.order,
                        proposed)
        token = int(str(ticket.extra.get("token", 0)))
        _, errors = self._txn([*self._guards(ticket), {
            "Verb": "lock", "Key": self._leader_key(ticket.election),
            "Session": str(ticket.extra["session"]), "Value": self._value(record, token),
        }])
        if errors:
            raise NotLeader(f"proclaim refused by Consul: {ticket.candidate_id} does not "
                            f"lead election {ticket.election!r}")
        ticket.extra["value"] = value

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        _, errors = self._txn([*self._guards(ticket), {
            "Verb": "set", "Key": self._data_key(key),
            "Value": base64.b64encode(value).decode()}])
        if errors:
            raise NotLeader(f"guarded write refused by Consul: {ticket.candidate_id} does "
                            f"not lead election {ticket.election!r}")

    def read(self, key: str) -> bytes | None:
        status, _, entries = self._get(self._data_key(key))
        if status == 404 or not entries:
            return None
        raw = entries[0].get("Value")
        return base64.b64decode(raw) if raw else b""

    # -- observing ------------------------------------------------------------------

    @staticmethod
    def _info(election: str, entries: Any) -> LeaderInfo | None:
        if not entries or not entries[0].get("Session"):
            return None
        entry = entries[0]
        record = json.loads(base64.b64decode(entry.get("Value") or "") or b"{}")
        token = int(record.get("token") or entry["ModifyIndex"])
        return LeaderInfo(election, str(record.get("id", "")),
                          base64.b64decode(record.get("value", "")), token)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._info(election, self._get(self._leader_key(election))[2])

    def contenders(self, election: str) -> list[Contender]:
        found = []
        for entry in self._queue(election):  # a consistent read, in CreateIndex order
            record = json.loads(base64.b64decode(entry.get("Value") or "") or b"{}")
            found.append(Contender(str(record.get("id", "")),
                                   base64.b64decode(record.get("value", "")),
                                   int(entry["CreateIndex"])))
        current = self.leader(election) if found else None
        if current is not None:  # a proclaim changes the leader key's value only
            found = [Contender(c.candidate_id, current.value, c.order)
                     if i == 0 and c.candidate_id == current.candidate_id else c
                     for i, c in enumerate(found)]
        return found

    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        key = self._leader_key(election)
        _, index, entries = self._get(key)  # re-read first: nothing is missed
        never = threading.Event()
        while True:
            current = self._info(election, entries)
            if current != known:
                return current
            got = self._block(key, index, deadline, never)
            if got is None:
                return current
            _, new_index, entries = got
            index = new_index if new_index >= index else 0

    def _watch(self, ticket: Ticket) -> None:
        stop = threading.Event()
        with self._lock:
            self._watchers[ticket.key] = stop
        threading.Thread(target=self._guard_leadership, args=(ticket, stop),
                         name="tenure-consul-watch", daemon=True).start()

    def _guard_leadership(self, ticket: Ticket, stop: threading.Event) -> None:
        """Reports a loss when the leader key stops being held by the ticket's session
        (deleted by an operator, session invalidated); confirmed by a consistent read."""
        key = self._leader_key(ticket.election)
        session = str(ticket.extra["session"])
        index, consistent = 0, True
        while not stop.is_set() and not self._closed.is_set():
            try:
                if consistent:
                    _, index, entries = self._get(key)
                else:
                    got = self._block(key, index, None, stop)
                    if got is None:
                        return
                    _, new_index, entries = got
                    if new_index < index:
                        consistent = True
                        continue
                    index = new_index
            except StoreUnavailable as exc:
                log.debug("leadership watch on %s: %s", key, exc)
                consistent = True
                stop.wait(0.5)
                continue
            if entries and entries[0].get("Session") == session:
                consistent = False
            elif not consistent:
                consistent = True  # confirm with a consistent read before reporting
            else:
                if not stop.is_set():
                    self._report_loss(ticket, "the Consul leader key is no longer held "
                                      "by this client's session")
                return

    def _stop_watchers(self) -> None:
        with self._lock:
            watchers, self._watchers = list(self._watchers.values()), {}
        for stop in watchers:
            stop.set()

    def close(self) -> None:
        self._closed.set()
        self._stop_watchers()
        for agent in self._agents:
            agent.http.session.close()


def _sleep(seconds: float, deadline: float | None, cancelled: threading.Event) -> None:
    if deadline is not None:
        seconds = min(seconds, max(0.0, deadline - time.monotonic()))
    cancelled.wait(seconds)
