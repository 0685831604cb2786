"""The PostgreSQL backend: ``postgresql://user@host:port[,host:port...]/dbname[?...]``.

Mapping of the contract (tables in ``schema``, default ``tenure``; SQL in
:mod:`tenure.adapters.postgres_sql`, every step ONE autocommit statement):

* session: ONE row in ``sessions`` per client. :meth:`PostgresStore.renew_session` is
  one UPDATE, whatever the number of elections held (it also lists the client's rows,
  so one deleted by an operator is reported lost). It sets ``expires_at =
  clock_timestamp() + ttl`` only where the row is still live, so an expired session is
  never revived; a session found dead is deleted by whoever finds it in its way.
* candidates: rows of ``candidates`` in arrival order. ``seq`` is an identity column:
  the fencing token. Enqueue first locks the election's row in ``elections`` (an
  upsert, held to commit) and only then draws ``seq``, so rows of one election commit
  in ``seq`` order and a row can never appear below one that was already read.
* try_lead: one statement deletes the dead sessions ahead of the ticket (with their
  rows), checks the ticket's own session is live (else SessionExpired) and, if no row
  is left ahead, marks the row ``led_at`` and returns Won. Deleting a session and
  renewing it conflict on the same row, so a renewal and a takeover are serialized: a
  session the store judged dead is never renewed after someone took over from it. The
  Won statement always WRITES, so it returns only once its commit -- and with it
  everything it read -- is on the synchronous standby. Otherwise the Wait's signal is
  the election's NOTIFY channel, LISTENed to before the statement, and ``retry_at`` the
  expiry of the earliest session ahead (expiry itself is silent).
* wake-ups: a trigger on ``candidates`` NOTIFYs the election's channel on every insert,
  delete (also cascaded from a deleted session) and proclaim; a listener thread holds
  ONE extra connection with LISTEN and fires each waiter's Signal for its election.
  Losing that connection fires every signal (notifications may have been missed).
* proclaim / guarded write: one statement that first selects our row -- ``led_at`` set,
  session live, no row below it -- ``FOR KEY SHARE`` (so a takeover deleting our
  session waits for it, or it sees the session gone), then updates the value or
  upserts into ``data``. Nothing selected: NotLeader, nothing written.
* observe_step / leader / contenders: the lowest live row (and every live row), with a
  Wait on the channel and ``retry_at`` at the leader's expiry.

Clock reasoning: expiry is judged by the server's ``clock_timestamp()``, the wall clock
at the moment a statement reads it (``now()`` would be the transaction's start). A
renewal SENT at ``t`` reaches the server after ``t``, which sets the expiry to at least
``t + ttl`` on its clock, so the core's deadline ``t + ttl x (1 - drift)`` on our
monotonic clock ends first as long as the two clocks run at rates within ``drift`` of
each other. The server's wall clock is not monotonic: a STEP forward by ``d`` on the
server expires every session up to ``d`` early -- a leader may then overlap with its
successor for up to ``d``; a step back only delays expiry. ``drift`` covers rate, not
steps: run the servers' clocks slewed (chrony/ntpd without step), and after a failover
the new primary's clock judges, so keep primary and standbys synchronised too.

Limits: linearizable only on the primary (``target_session_attrs=read-write``: with
several hosts the client finds the primary and follows a promotion). A promoted
SYNCHRONOUS standby has every acknowledged renewal, enqueue and Won, so tokens keep
rising; an ASYNCHRONOUS standby can lose acknowledged commits: tokens can repeat and a
dead session may look alive (or a live one dead) after such a failover, as with Redis
replicas. ``synchronous_commit`` must be ``on`` or ``remote_apply`` and no statement may
be cancelled while it waits for the standby (PostgreSQL then commits locally only); the
adapter bounds statements by closing the socket, never by cancelling. Reads can see a
commit before the standby confirmed it; a leader never acts on one (Won writes). Tokens
restart only if the tables are dropped. LISTEN needs a session: through PgBouncer in
transaction mode give ``listen=HOST:PORT`` of the server itself, or ``listen=none``
(waiters then poll every min(TTL/4, 1 s)); a pooled listener is detected (its backend
pid is not the one the connection announced), logged, and polled the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from tenure.adapters import postgres_sql as q
from tenure.config import BackendURL, parse_backend_url
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable
from tenure.options import Options
from tenure.store import (
    Contender,
    EventSignal,
    LeaderInfo,
    NoSignal,
    Signal,
    Step,
    Store,
    StoreLimits,
    Ticket,
    Wait,
    Won,
)

log = logging.getLogger("tenure.postgres")
R = TypeVar("R")
Query = str | sql.SQL | sql.Composed

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
OPTIONS = {
    "schema": "schema of tenure's tables (default tenure)",
    "timeout": "seconds per statement (default 2; renewals at most TTL/4)",
    "sslmode": "libpq sslmode: " + ", ".join(SSL_MODES),
    "sslrootcert": "CA certificate file the server is verified with (PEM)",
    "password_file": "file holding the password",
    "listen": "HOST:PORT[,...] of the server for LISTEN (bypassing a transaction "
              "pooler), or none to poll",
}
_AUTH_REFUSED = ("password authentication failed", "no password supplied",
                 "authentication failed", "does not exist", "no pg_hba.conf entry")


@dataclass(frozen=True)
class PostgresConfig:
    """What a URL says: libpq parameters (without the password), schema and timeouts."""

    params: dict[str, str]
    listen: dict[str, str] | None
    password: str | None
    schema: str
    timeout: float
    description: str

    def conninfo(self, params: dict[str, str], timeout: float) -> str:
        extra = {} if self.password is None else {"password": self.password}
        return make_conninfo("", **params, **extra,
                             connect_timeout=str(max(2, math.ceil(timeout))))


def _hosts(hosts: Sequence[tuple[str, int]]) -> dict[str, str]:
    return {"host": ",".join(h for h, _ in hosts), "port": ",".join(str(p) for _, p in hosts),
            "target_session_attrs": "read-write"}


def parse_url(url: BackendURL) -> PostgresConfig:
    """Validates every option of ``url``; ConfigError naming the input otherwise."""
    opts = Options("postgres", url, OPTIONS)
    schema = opts.text("schema", "tenure")
    if not q.SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"postgres option schema={schema!r} must be a lower-case SQL name: "
                          "a letter or _, then letters, digits or _, at most 63")
    dbname = url.path.lstrip("/")
    if "/" in dbname:
        raise ConfigError(f"postgres URL path {url.path!r} must be /DBNAME (one name)")
    params = {**_hosts(url.hosts), "application_name": "tenure"}
    if dbname:
        params["dbname"] = dbname
    user = opts.user()
    if user is not None:
        params["user"] = user
    mode = opts.optional("sslmode")
    if mode is not None:
        params["sslmode"] = opts.choice("sslmode", mode, SSL_MODES)
    if opts.pem("sslrootcert") is not None:
        params["sslrootcert"] = opts.text("sslrootcert", "")
    listen_text = opts.text("listen", "")
    listen: dict[str, str] | None = params
    direct: tuple[tuple[str, int], ...] = ()
    if listen_text == "none":
        listen = None
    elif listen_text:
        problem = "/" in listen_text or "@" in listen_text or "?" in listen_text
        with contextlib.suppress(ConfigError):
            direct = parse_backend_url(f"{url.scheme}://{listen_text}")[0].hosts
        if problem or not direct:
            raise ConfigError(f"postgres option listen={listen_text!r} must be HOST:PORT[,...] "
                              "of the server itself, or none")
        listen = {**params, **_hosts(direct)}
    hosts = ",".join(f"{h}:{p}" for h, p in url.hosts)
    who = f"{user}@" if user else ""
    return PostgresConfig(
        params, listen, opts.secret("password", env="PGPASSWORD"), schema,
        opts.duration("timeout", 2.0, low=0, high=300),
        f"{url.scheme}://{who}{hosts}/{dbname}" + (f"?schema={schema}" if schema != "tenure"
                                                    else ""))


class _Link:
    """One autocommit connection, opened on demand. A statement that does not finish
    in time has its socket shut down (a cancel request would let PostgreSQL commit
    a transaction still waiting for the synchronous standby; a shut-down socket only
    ends the wait on our side)."""

    def __init__(self, config: PostgresConfig, params: dict[str, str]) -> None:
        self.config = config
        self.params = params
        self.lock = threading.RLock()
        self.conn: psycopg.Connection[Any] | None = None
        self._running: object | None = None
        self._state = threading.Lock()

    def connection(self, timeout: float) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = psycopg.connect(self.config.conninfo(self.params, timeout),
                                        autocommit=True, prepare_threshold=None)
        return self.conn

    def run(self, query: Query, params: dict[str, Any] | None,
            timeout: float) -> list[tuple[Any, ...]]:
        """The rows of one statement; psycopg errors propagate (the caller maps them)."""
        with self.lock:
            try:
                conn = self.connection(timeout)
                call = object()
                with self._state:
                    self._running = call
                timer = threading.Timer(timeout, self._abort, (conn, call))
                timer.daemon = True
                timer.start()
                try:
                    cursor = conn.execute(query, params)
                    return cursor.fetchall() if cursor.description else []
                finally:
                    with self._state:
                        self._running = None
                    timer.cancel()
            except psycopg.Error:
                if self.conn is not None and (self.conn.broken or self.conn.closed):
                    self.close()
                raise

    def _abort(self, conn: psycopg.Connection[Any], call: object) -> None:
        with self._state:
            if self._running is not call:
                return
            with contextlib.suppress(OSError, psycopg.Error), socket.socket(
                    fileno=os.dup(conn.pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class _Listener:
    """The LISTEN connection and its thread: fires the signals of each election whose
    channel is notified, and every signal when the connection breaks."""

    def __init__(self, store: PostgresStore, link: _Link) -> None:
        self.store = store
        self.link = link
        self.cond = threading.Condition()
        self.signals: dict[str, set[EventSignal]] = {}
        self.listening: set[str] = set()
        self.pooled = False
        self.error = ""
        self.closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def signal(self, channel: str, timeout: float) -> EventSignal:
        """A signal for ``channel``, returned once LISTEN on it is in effect."""
        signal = EventSignal(on_close=lambda: self._drop(channel, signal))
        with self.cond:
            self.signals.setdefault(channel, set()).add(signal)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tenure-pg-listen",
                                                daemon=True)
                self._thread.start()
            if channel not in self.listening:
                os.write(self._wake_w, b".")
                self.cond.notify_all()  # also ends a reconnect back-off
                if not self.cond.wait_for(lambda: channel in self.listening or self.closed,
                                          timeout) or self.closed:
                    self._drop_locked(channel, signal)
                    raise StoreUnavailable(f"PostgreSQL {self.store.description}: cannot "
                                           f"LISTEN for changes: {self.error or 'timed out'}")
        return signal

    def _drop(self, channel: str, signal: EventSignal) -> None:
        with self.cond:
            self._drop_locked(channel, signal)

    def _drop_locked(self, channel: str, signal: EventSignal) -> None:
        self.signals.get(channel, set()).discard(signal)

    def _fire(self, channel: str | None) -> None:
        with self.cond:
            fired = [s for c, group in self.signals.items() if channel in (None, c)
                     for s in group]
        for signal in fired:
            signal.fire()

    def _loop(self) -> None:
        backoff = 0.05
        while not self.closed:
            try:
                self._serve()
                backoff = 0.05
            except Exception as exc:  # psycopg errors, a closed pipe: reconnect
                with self.cond:
                    self.error = str(exc).strip() or exc.__class__.__name__
                    self.listening.clear()
                    self.cond.notify_all()
                self.link.close()
                self._fire(None)  # notifications may have been missed
                with self.cond:
                    self.cond.wait(backoff)
                backoff = min(1.0, backoff * 2)

    def _serve(self) -> None:
        conn = self.link.connection(self.store.config.timeout)
        pid = self.link.run("SELECT pg_backend_pid()", None, self.store.config.timeout)[0][0]
        if pid != conn.info.backend_pid and not self.pooled:
            self.pooled = True
            log.warning("PostgreSQL %s: the LISTEN connection goes through a connection "
                        "pooler; through PgBouncer in transaction mode notifications are "
                        "lost, so waiters also poll every min(TTL/4, 1 s); give listen="
                        "HOST:PORT of the server itself", self.store.description)
        while not self.closed:
            with self.cond:
                todo = [c for c in self.signals if c not in self.listening]
            for channel in todo:
                self.link.run(sql.SQL("LISTEN {}").format(sql.Identifier(channel)), None,
                              self.store.config.timeout)
            with self.cond:
                self.listening.update(todo)
                if todo:
                    self.cond.notify_all()
            for note in conn.notifies(timeout=0):
                self._fire(note.channel)
            readable, _, _ = select.select([conn.fileno(), self._wake_r], [], [], 1.0)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        os.write(self._wake_w, b".")
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.link.close()
        self._fire(None)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)


@dataclass(eq=False)
class PostgresTicket(Ticket):
    """A row of ``candidates``; ``order`` is its ``seq`` (the token once it leads)."""


class PostgresStore(Store[PostgresTicket]):
    """The contract over one PostgreSQL primary (see the module docstring)."""

    # Expiry is exact to the microsecond at each statement (no expiry sweep), so the floor
    # is what a renewal round trip needs: a commit (fsync, plus the synchronous standby's
    # flush) within TTL/4 = 250 ms at TTL 1 s.
    limits = StoreLimits(min_ttl=1.0, max_ttl=86400.0)

    def __init__(self, config: PostgresConfig) -> None:
        super().__init__()
        self.config = config
        self.sql = q.Statements.for_schema(config.schema)
        self._main = _Link(config, config.params)
        self._renewer = _Link(config, config.params)
        self._listener = None if config.listen is None else _Listener(
            self, _Link(config, config.listen))
        self._session: uuid.UUID | None = None
        self._ttl = 0.0
        self._schema_ready = False
        self.renewals = 0
        """Renewal statements sent (one per renewal, whatever the number of elections)."""
        if config.listen is None:
            log.warning("PostgreSQL %s with listen=none: no LISTEN/NOTIFY; waiters poll "
                        "every min(TTL/4, 1 s)", config.description)

    @classmethod
    def from_url(cls, url: BackendURL) -> PostgresStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    # -- plumbing -------------------------------------------------------------------

    def _run(self, action: str, query: Query, link: _Link | None = None,
             timeout: float | None = None, **params: Any) -> list[tuple[Any, ...]]:
        try:
            return (link or self._main).run(query, params, timeout or self.config.timeout)
        except psycopg.Error as exc:
            raise self._error(action, exc) from None

    def _read(self, action: str, query: Query, **params: Any) -> list[tuple[Any, ...]]:
        """A read; no tables yet (nobody campaigned, nothing initialised) reads as empty,
        as an empty store does on every backend. Reads never create the tables."""
        try:
            return self._main.run(query, params, self.config.timeout)
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            return []
        except psycopg.Error as exc:
            raise self._error(action, exc) from None

    def _error(self, action: str, exc: psycopg.Error) -> Exception:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"PostgreSQL {self.description}"
        if isinstance(exc, errors.UndefinedTable | errors.InvalidSchemaName):
            return StoreUnavailable(
                f"{where} has no tenure tables in schema {self.config.schema!r}; the first "
                "campaign creates them, or run: tenure postgres init URL")
        if isinstance(exc, errors.InsufficientPrivilege):
            return ConfigError(
                f"{where}: {action}: {detail}; run `tenure postgres init URL` as a user who "
                "may create the schema, and grant this user SELECT, INSERT, UPDATE, DELETE "
                "on its tables (tenure postgres init --grant USER)")
        if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None and any(
                text in detail for text in _AUTH_REFUSED):
            return ConfigError(f"{where} refused the connection: {detail}; check the user, "
                               "password and database of the URL")
        return StoreUnavailable(f"{where}: {action}: {detail}")

    def _signal(self, election: str) -> Signal:
        if self._listener is None:
            return NoSignal()
        return self._listener.signal(q.channel(self.config.schema, election),
                                     self.config.timeout)

    def _retry_at(self, seconds: float | None) -> float | None:
        """The monotonic time ``seconds`` (server time left) from now, or the polling
        fallback where notifications cannot be relied on."""
        now = time.monotonic()
        due = None if seconds is None else now + max(0.0, seconds)
        if self._listener is None or self._listener.pooled:
            poll = now + min((self._ttl or 4.0) / 4, 1.0)
            due = poll if due is None else min(due, poll)
        return due

    def _waiting(self, election: str, read: Callable[[], R]) -> tuple[Signal, R]:
        signal = self._signal(election)  # armed before the read
        try:
            return signal, read()
        except BaseException:
            signal.close()
            raise

    # -- schema ---------------------------------------------------------------------

    def init_schema(self) -> int:
        """Creates the schema and tables if missing (idempotent); returns the schema
        version. ConfigError if the tables are of a newer tenure, or creation is refused."""
        try:
            version = self._main.run(self.sql.version, None, self.config.timeout)[0][0]
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            self._run("create the schema", self.sql.create, timeout=max(10, self.config.timeout))
            version = self._run("read the schema version", self.sql.version)[0][0]
        except psycopg.Error as exc:
            raise self._error("read the schema version", exc) from None
        if version is None or version > q.SCHEMA_VERSION:
            raise ConfigError(
                f"PostgreSQL {self.description}: schema {self.config.schema!r} has tenure "
                f"schema version {version}, this tenure knows {q.SCHEMA_VERSION}: upgrade "
                "tenure, or use another schema=")
        self._schema_ready = True
        return int(version)

    def grant(self, role: str) -> None:
        """Lets ``role`` use the tables (schema usage and row privileges, no DDL)."""
        self._run(f"grant {role} the use of the tables", self.sql.grant(role))

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        if not self._schema_ready:
            self.init_schema()
        session = uuid.uuid4()
        self._run("open the session", self.sql.open, sid=session, ttl=ttl)
        self._session, self._ttl = session, ttl
        return ttl

    def renew_session(self, held: frozenset[PostgresTicket]) -> None:
        session = self._session
        if session is None:
            raise SessionExpired(f"PostgreSQL {self.description}: no session")
        self.renewals += 1
        (renewed, alive), = self._run("renew the session", self.sql.renew, self._renewer,
                                      min(self.config.timeout, self._ttl / 4), sid=session)
        if not renewed:
            raise SessionExpired(f"PostgreSQL {self.description}: session {session} expired")
        for ticket in held:
            if ticket.order not in alive:
                self.report_loss(ticket, f"its row was deleted from {self.description}")

    def close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._run("close the session", self.sql.close, sid=session)

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> PostgresTicket:
        session = self._session
        if session is None:
            raise SessionExpired(f"PostgreSQL {self.description}: no session")
        try:
            rows = self._run("enqueue", self.sql.enqueue, e=election, sid=session,
                             cid=candidate_id, v=value)
        except StoreUnavailable:
            # It may have committed unheard: remove it, else it would queue (and maybe
            # lead) unattended. The next enqueue removes it too.
            with contextlib.suppress(StoreUnavailable):
                self._run("enqueue cleanup", self.sql.unqueue, e=election, sid=session)
            raise
        if not rows:
            raise SessionExpired(f"PostgreSQL {self.description}: session {session} expired")
        seq = int(rows[0][0])
        return PostgresTicket(election, candidate_id, str(seq), seq)

    def try_lead(self, ticket: PostgresTicket) -> Step:
        signal, rows = self._waiting(ticket.election, lambda: self._run(
            "try lead", self.sql.try_lead, e=ticket.election, seq=ticket.order))
        (mine, won, ahead_expires), = rows
        if won:
            signal.close()
            return Won(ticket.order)
        if not mine:
            signal.close()
            raise SessionExpired(f"the entry of {ticket.candidate_id} in {ticket.election!r} "
                                 f"died with its session in {self.description}")
        # Nobody ahead yet not won: our row went with our session meanwhile -- step again.
        return Wait(signal, self._retry_at(0.0 if ahead_expires is None else ahead_expires))

    def withdraw(self, ticket: PostgresTicket) -> None:
        self._run("withdraw", self.sql.withdraw, seq=ticket.order)

    def _leading(self, ticket: PostgresTicket, action: str, query: Query,
                 **params: Any) -> None:
        if not self._run(action, query, seq=ticket.order, sid=self._session,
                         e=ticket.election, **params):
            raise NotLeader(f"{action} refused by PostgreSQL: {ticket.candidate_id} does not "
                            f"lead election {ticket.election!r}")

    def proclaim(self, ticket: PostgresTicket, value: bytes) -> None:
        self._leading(ticket, "proclaim", self.sql.proclaim, v=value)

    def guarded_write(self, ticket: PostgresTicket, key: str, value: bytes) -> None:
        self._leading(ticket, "guarded write", self.sql.guarded_write, k=key, v=value)

    def read(self, key: str) -> bytes | None:
        rows = self._read("read", self.sql.read, k=key)
        return bytes(rows[0][0]) if rows else None

    # -- observing ------------------------------------------------------------------

    def _leader_row(self, election: str) -> tuple[LeaderInfo | None, float | None]:
        rows = self._read("read the leader", self.sql.leader, e=election)
        if not rows:
            return None, None
        seq, candidate_id, value, expires_in = rows[0]
        return LeaderInfo(election, candidate_id, bytes(value), int(seq)), float(expires_in)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._leader_row(election)[0]

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        signal, (current, expires_in) = self._waiting(
            election, lambda: self._leader_row(election))
        return current, Wait(signal, self._retry_at(expires_in))

    def contenders(self, election: str) -> list[Contender]:
        rows = self._read("list contenders", self.sql.contenders, e=election)
        return [Contender(cid, bytes(value), int(seq)) for seq, cid, value, _ in rows]

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for link in (self._main, self._renewer):
            with link.lock:
                link.close()
