"""The PostgreSQL backend: ``postgresql://user@host:port[,host:port...]/dbname[?...]``.

Mapping of the contract (tables in ``schema``, default ``tenure``; SQL and
connections in :mod:`tenure.adapters.postgres_client`, every step ONE autocommit statement):

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
* read with the win (``Ticket.read_on_win``, docs/design.md): the try_lead statement
  reads that ``data`` row too (one statement, one snapshot) -- used only when it won
  without deleting a session; a win over an expired session leaves the read to the
  core, since the snapshot can predate that leader's last guarded write (see
  :data:`~tenure.adapters.postgres_client.TRY_LEAD`).
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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from tenure.adapters import postgres_client as q
from tenure.adapters.postgres_client import Link, Listener, PostgresConfig, Query, parse_url
from tenure.config import BackendURL
from tenure.errors import ConfigError, NotLeader, SessionExpired, StoreUnavailable
from tenure.store import (
    Contender,
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
        self._main = Link(config, config.params)
        self._renewer = Link(config, config.params)
        self._listener = None if config.listen is None else Listener(
            Link(config, config.listen), config.description)
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

    def _run(self, action: str, query: Query, link: Link | None = None,
             timeout: float | None = None, **params: Any) -> list[tuple[Any, ...]]:
        try:
            return (link or self._main).run(query, params, timeout or self.config.timeout)
        except psycopg.Error as exc:
            raise q.store_error(self.description, self.config.schema, action, exc) from None

    def _read(self, action: str, query: Query, **params: Any) -> list[tuple[Any, ...]]:
        """A read; no tables yet (nobody campaigned, nothing initialised) reads as empty,
        as an empty store does on every backend. Reads never create the tables."""
        try:
            return self._main.run(query, params, self.config.timeout)
        except (errors.UndefinedTable, errors.InvalidSchemaName):
            return []
        except psycopg.Error as exc:
            raise q.store_error(self.description, self.config.schema, action, exc) from None

    def _signal(self, election: str) -> Signal:
        if self._listener is None:
            return NoSignal()
        return self._listener.signal(q.channel(self.config.schema, election))

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
            raise q.store_error(self.description, self.config.schema, "read the schema version",
                                exc) from None
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
            "try lead", self.sql.try_lead, e=ticket.election, seq=ticket.order,
            k=ticket.read_on_win))
        (mine, won, ahead_expires, marker, deleted), = rows
        if won:
            signal.close()
            if deleted:  # the marker column may predate the dead leader's last write
                return Won(ticket.order)
            return Won(ticket.order, None if marker is None else bytes(marker),
                       read_done=ticket.read_on_win is not None)
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
