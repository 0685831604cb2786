"""How the PostgreSQL backend talks to the server: URL options, the SQL, connections.

* :func:`parse_url`: the URL's options as libpq parameters (one password place).
* The schema (version 1) and ONE statement per store step. Every step runs as one
  statement in autocommit mode, so it is its own transaction and needs no session
  state: it runs the same through PgBouncer in transaction (or statement) pooling.
  Nothing here uses advisory locks, prepared statements across transactions, temporary
  tables or ``SET``; only :data:`CREATE` (run once, by the first client or ``tenure
  postgres init``) takes a transaction-scoped advisory lock so that clients creating
  the schema at once do not collide. ``{s}`` is the schema, quoted as an identifier.
  Why each statement is safe is argued in :mod:`tenure.adapters.postgres`.
* :class:`Link`: one autocommit connection with statements bounded by a timeout;
  :class:`Listener`: the LISTEN connection and its thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from tenure.config import BackendURL, parse_backend_url
from tenure.errors import ConfigError, StoreUnavailable
from tenure.options import Options
from tenure.readiness import wait_readable
from tenure.store import EventSignal

log = logging.getLogger("tenure.postgres")
Query = str | sql.SQL | sql.Composed

SCHEMA_VERSION = 1
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

CREATE = """
SELECT pg_advisory_xact_lock(hashtext('tenure schema ' || {name}));
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.sessions (
    id uuid PRIMARY KEY,
    ttl interval NOT NULL,
    expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.elections (name text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS {s}.candidates (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    election text NOT NULL,
    candidate_id text NOT NULL,
    session_id uuid NOT NULL REFERENCES {s}.sessions (id) ON DELETE CASCADE,
    value bytea NOT NULL,
    led_at timestamptz);
CREATE INDEX IF NOT EXISTS candidates_by_election ON {s}.candidates (election, seq);
CREATE INDEX IF NOT EXISTS candidates_by_session ON {s}.candidates (session_id);
CREATE TABLE IF NOT EXISTS {s}.data (
    key text PRIMARY KEY, value bytea NOT NULL, token bigint NOT NULL);
CREATE OR REPLACE FUNCTION {s}.ring() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenure_' || left(md5(TG_TABLE_SCHEMA || '/' || CASE TG_OP
        WHEN 'DELETE' THEN OLD.election ELSE NEW.election END), 24), '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS candidates_ring ON {s}.candidates;
CREATE TRIGGER candidates_ring AFTER INSERT OR DELETE OR UPDATE OF value
    ON {s}.candidates FOR EACH ROW EXECUTE FUNCTION {s}.ring();
INSERT INTO {s}.schema_version
    SELECT {version} WHERE NOT EXISTS (SELECT 1 FROM {s}.schema_version);
"""
"""Creates schema version 1 (idempotent). Every change of a candidate row -- enqueue,
withdraw, proclaim, and rows deleted with a dead session -- rings the election's
channel (see :func:`channel`) when its transaction commits."""

VERSION = "SELECT max(version) FROM {s}.schema_version"

GRANT = """
GRANT USAGE ON SCHEMA {s} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};
"""
"""What a user without DDL rights needs on the tables ``tenure postgres init`` made."""

_LIVE = "s.expires_at > clock_timestamp()"
_TTL = "make_interval(secs => %(ttl)s)"

OPEN = f"""
WITH gone AS (DELETE FROM {{s}}.sessions WHERE expires_at <= clock_timestamp())
INSERT INTO {{s}}.sessions (id, ttl, expires_at)
VALUES (%(sid)s, {_TTL}, clock_timestamp() + {_TTL})"""

RENEW = """
WITH renewed AS (
    UPDATE {s}.sessions SET expires_at = clock_timestamp() + ttl
    WHERE id = %(sid)s AND expires_at > clock_timestamp() RETURNING id)
SELECT EXISTS (SELECT 1 FROM renewed),
       ARRAY(SELECT seq FROM {s}.candidates WHERE session_id = %(sid)s)"""

CLOSE = "DELETE FROM {s}.sessions WHERE id = %(sid)s"

ENQUEUE = f"""
WITH turn AS (
    INSERT INTO {{s}}.elections (name) VALUES (%(e)s)
    ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING name),
stale AS (DELETE FROM {{s}}.candidates WHERE session_id = %(sid)s AND election = %(e)s)
INSERT INTO {{s}}.candidates (election, candidate_id, session_id, value)
SELECT turn.name, %(cid)s, s.id, %(v)s FROM turn, {{s}}.sessions s
WHERE s.id = %(sid)s AND {_LIVE}
RETURNING seq"""
"""The upsert locks the election's row until commit, before the identity value is
drawn: enqueues of one election commit in ``seq`` order (see the adapter)."""

UNQUEUE = "DELETE FROM {s}.candidates WHERE session_id = %(sid)s AND election = %(e)s"

TRY_LEAD = f"""
WITH gone AS (
    DELETE FROM {{s}}.sessions s USING {{s}}.candidates c
    WHERE c.session_id = s.id AND c.election = %(e)s AND c.seq < %(seq)s
      AND s.expires_at <= clock_timestamp()
    RETURNING s.id),
mine AS (
    SELECT c.seq FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.seq = %(seq)s AND {_LIVE}),
ahead AS (
    SELECT s.expires_at FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.election = %(e)s AND c.seq < %(seq)s AND s.id NOT IN (SELECT id FROM gone)),
won AS (
    UPDATE {{s}}.candidates SET led_at = clock_timestamp()
    WHERE seq = %(seq)s AND EXISTS (SELECT 1 FROM mine) AND NOT EXISTS (SELECT 1 FROM ahead)
    RETURNING seq)
SELECT EXISTS (SELECT 1 FROM mine), EXISTS (SELECT 1 FROM won),
       extract(epoch FROM (SELECT min(expires_at) FROM ahead) - clock_timestamp())::float8,
       (SELECT d.value FROM {{s}}.data d WHERE d.key = %(k)s AND EXISTS (SELECT 1 FROM won)),
       EXISTS (SELECT 1 FROM gone)"""
"""One statement, so one snapshot (taken when it starts, READ COMMITTED). The 4th
column, where it won and ``k`` is not NULL, is the value of the guarded-write key ``k``
in that snapshot; the 5th says whether ``gone`` deleted a session.

When nothing was deleted, the win rests on the snapshot alone: nothing is left ahead
in it, so the previous leader's release is in it, and so is the marker it committed
before that release -- the 4th column can be trusted. When ``gone`` deleted a session,
the win rests on that DELETE instead, and the DELETE acts on the row's NEWEST version
(it waits for a lock holder, then re-checks its WHERE on the committed row): the dead
leader's guarded write can commit after the snapshot -- while the DELETE waits for its
``FOR KEY SHARE``, or just before the DELETE reaches the row -- and is then missing from
the 4th column (tests/postgres/test_read_with_win_review.py). The adapter then leaves
the read to the core (a new statement, a new snapshot, after this commit).

The decision itself (the 2nd column) and the token are not weakened by the old
snapshot: the token is our own row's ``seq``, which never changes. A row ahead can
only be missing from ``ahead`` if its deletion committed before the snapshot -- rows
of one election commit in ``seq`` order (see ENQUEUE), so none can appear below ours
later. A row ahead that is in the snapshot blocks the win unless THIS statement
deleted its session, and that deletion re-checked ``expires_at <= clock_timestamp()``
on the newest row version, so a renewal committed meanwhile keeps the session (and the
row blocks), and a leader step holding ``FOR KEY SHARE`` finishes first; after our
commit no step of that session passes ``_LEADING``. Anything else the old snapshot
misses (a release, or a deletion by another statement) only leaves a row ahead that is
no longer there: a Wait, woken by that commit's NOTIFY -- late, never wrong."""

WITHDRAW = "DELETE FROM {s}.candidates WHERE seq = %(seq)s"

_LEADING = f"""
WITH me AS (
    SELECT c.seq FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
    WHERE c.seq = %(seq)s AND c.session_id = %(sid)s AND c.led_at IS NOT NULL AND {_LIVE}
      AND NOT EXISTS (
          SELECT 1 FROM {{s}}.candidates o WHERE o.election = %(e)s AND o.seq < %(seq)s)
    FOR KEY SHARE OF c, s)"""

PROCLAIM = _LEADING + """
UPDATE {s}.candidates SET value = %(v)s WHERE seq IN (SELECT seq FROM me) RETURNING seq"""

GUARDED_WRITE = _LEADING + """
INSERT INTO {s}.data (key, value, token) SELECT %(k)s, %(v)s, seq FROM me
ON CONFLICT (key) DO UPDATE SET value = excluded.value, token = excluded.token
RETURNING token"""

READ = "SELECT value FROM {s}.data WHERE key = %(k)s"

CONTENDERS = f"""
SELECT c.seq, c.candidate_id, c.value,
       extract(epoch FROM s.expires_at - clock_timestamp())::float8
FROM {{s}}.candidates c JOIN {{s}}.sessions s ON s.id = c.session_id
WHERE c.election = %(e)s AND {_LIVE} ORDER BY c.seq"""

LEADER = CONTENDERS + " LIMIT 1"


def channel(schema: str, election: str) -> str:
    """The NOTIFY channel of ``election``: what the ``ring`` trigger computes in SQL."""
    digest = hashlib.md5(f"{schema}/{election}".encode(), usedforsecurity=False)
    return "tenure_" + digest.hexdigest()[:24]


@dataclass(frozen=True)
class Statements:
    """Every statement above, composed for one schema."""

    schema: str
    create: sql.Composed
    version: sql.Composed
    open: sql.Composed
    renew: sql.Composed
    close: sql.Composed
    enqueue: sql.Composed
    unqueue: sql.Composed
    try_lead: sql.Composed
    withdraw: sql.Composed
    proclaim: sql.Composed
    guarded_write: sql.Composed
    read: sql.Composed
    contenders: sql.Composed
    leader: sql.Composed

    def grant(self, role: str) -> sql.Composed:
        """:data:`GRANT` for ``role``."""
        return sql.SQL(GRANT).format(s=sql.Identifier(self.schema), role=sql.Identifier(role))

    @classmethod
    def for_schema(cls, schema: str) -> Statements:
        """``schema`` must match :data:`SCHEMA_NAME` (checked by the adapter)."""
        ident = sql.Identifier(schema)

        def compose(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=ident)

        create = sql.SQL(CREATE).format(s=ident, name=sql.Literal(schema),
                                        version=sql.Literal(SCHEMA_VERSION))
        return cls(
            schema, create, compose(VERSION), compose(OPEN), compose(RENEW), compose(CLOSE),
            compose(ENQUEUE), compose(UNQUEUE), compose(TRY_LEAD), compose(WITHDRAW),
            compose(PROCLAIM), compose(GUARDED_WRITE), compose(READ), compose(CONTENDERS),
            compose(LEADER),
        )


# -- URL -----------------------------------------------------------------------------

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
OPTIONS = {
    "schema": "schema of tenure's tables (default tenure)",
    "timeout": "seconds per statement (default 2; renewals at most TTL/4)",
    "sslmode": "libpq sslmode: " + ", ".join(SSL_MODES),
    "sslrootcert": "CA certificate file the server is verified with (PEM)",
    "user": "the user, if not in the URL",
    "password_file": "file holding the password",
    "listen": "HOST:PORT[,...] of the server for LISTEN (bypassing a transaction "
              "pooler), or none to poll",
}
_REFUSED = ("password authentication failed", "no password supplied", "authentication failed",
            "does not exist", "no pg_hba.conf entry", "certificate verify failed",
            "does not match host name", "server does not support SSL", "root certificate file")
"""Connection failures that retrying cannot cure: ConfigError at once."""


@dataclass(frozen=True)
class PostgresConfig:
    """What a URL says: libpq parameters (without the password), schema and timeouts."""

    params: dict[str, str]
    listen: dict[str, str] | None
    password: str | None = field(repr=False)
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
    if not SCHEMA_NAME.fullmatch(schema):
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


def store_error(description: str, schema: str, action: str, exc: psycopg.Error) -> Exception:
    """The tenure error for a psycopg error of ``action``: missing tables and refused
    connections name the fix (ConfigError where retrying cannot help)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = f"PostgreSQL {description}"
    if isinstance(exc, errors.UndefinedTable | errors.InvalidSchemaName):
        return StoreUnavailable(
            f"{where} has no tenure tables in schema {schema!r}; the first campaign creates "
            "them, or run: tenure postgres init URL")
    if isinstance(exc, errors.InsufficientPrivilege):
        return ConfigError(
            f"{where}: {action}: {detail}; run `tenure postgres init URL` as a user who may "
            "create the schema, and grant this user SELECT, INSERT, UPDATE, DELETE on its "
            "tables (tenure postgres init --grant USER)")
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None and any(
            text in detail for text in _REFUSED):
        return ConfigError(f"{where} refused the connection: {detail}; check the user, "
                           "password, database and TLS options of the URL")
    return StoreUnavailable(f"{where}: {action}: {detail}")


# -- connections ---------------------------------------------------------------------


class Link:
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


class Listener:
    """The LISTEN connection and its thread: fires the signals of each election whose
    channel is notified, and every signal when the connection breaks."""

    def __init__(self, link: Link, description: str) -> None:
        self.link = link
        self.description = description
        self.timeout = link.config.timeout
        self.cond = threading.Condition()
        self.signals: dict[str, set[EventSignal]] = {}
        self.listening: set[str] = set()
        self.pooled = False
        self.error = ""
        self.closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def signal(self, channel: str) -> EventSignal:
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
                                          self.timeout) or self.closed:
                    self._drop_locked(channel, signal)
                    raise StoreUnavailable(f"PostgreSQL {self.description}: cannot "
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
        conn = self.link.connection(self.timeout)
        pid = self.link.run("SELECT pg_backend_pid()", None, self.timeout)[0][0]
        if pid != conn.info.backend_pid and not self.pooled:
            self.pooled = True
            log.warning("PostgreSQL %s: the LISTEN connection goes through a connection "
                        "pooler; through PgBouncer in transaction mode notifications are "
                        "lost, so waiters also poll every min(TTL/4, 1 s); give listen="
                        "HOST:PORT of the server itself", self.description)
        while not self.closed:
            with self.cond:
                todo = [c for c in self.signals if c not in self.listening]
            for channel in todo:
                self.link.run(sql.SQL("LISTEN {}").format(sql.Identifier(channel)), None,
                              self.timeout)
            with self.cond:
                self.listening.update(todo)
                if todo:
                    self.cond.notify_all()
            for note in conn.notifies(timeout=0):
                self._fire(note.channel)
            readable, _ = wait_readable([conn.fileno(), self._wake_r], 1.0)
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
