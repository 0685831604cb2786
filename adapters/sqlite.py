"""The embedded backend: ``sqlite:///path/to/file.db``, for many processes on one host.

Mapping of the contract:

* session: a row in ``sessions`` with ``expires_at`` on the host's monotonic clock
  (``CLOCK_MONOTONIC`` is one clock for every process of a host) and the kernel's
  ``boot_id``: rows written before the host restarted are dead, whatever their time;
* candidates: rows of ``candidates`` in arrival order; the leader is the live row with
  the lowest ``seq`` (``AUTOINCREMENT``, so never reused -- it is the fencing token, and
  it never goes back, also after any process or the host restarts);
* wake-ups: a bell file per election, rung by every change and waited on with inotify;
  a waiter also wakes when the session of a candidate ahead of it expires. No polling;
* guarded writes and proclaims: ``BEGIN IMMEDIATE`` transactions that first check the
  writer is the live leader; commits are ``synchronous=FULL``, as are enqueues (the
  ``AUTOINCREMENT`` counter is the fencing token: it must survive a power loss).
  Session writes (open, renew, close) and withdrawals commit with
  ``synchronous=NORMAL`` (:data:`LIGHT_WRITES`).
* read with the win (``Ticket.read_on_win``, docs/design.md): the transaction that
  decides a win also reads that ``data`` row (one snapshot).

Limits: one host only (the file must not be on a network filesystem); a process
stopped inside a write transaction (microseconds long) would block other writers until
it resumes.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from tenacity import retry, retry_if_exception_message, stop_after_delay, wait_random

from tenure.adapters.filebell import CLOSED, BellBoard, ring
from tenure.config import BackendURL
from tenure.errors import (
    ConfigError,
    NotLeader,
    SessionExpired,
    StoreUnavailable,
    TenureError,
)
from tenure.options import Options
from tenure.store import Contender, LeaderInfo, Step, Store, StoreLimits, Ticket, Wait, Won

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, boot_id TEXT NOT NULL, expires_at REAL NOT NULL, ttl REAL NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, election TEXT NOT NULL,
    candidate_id TEXT NOT NULL, session_id TEXT NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS candidates_by_election ON candidates (election, seq);
CREATE INDEX IF NOT EXISTS candidates_by_session ON candidates (session_id);
CREATE TABLE IF NOT EXISTS data (key TEXT PRIMARY KEY, value BLOB NOT NULL, token INTEGER NOT NULL);
"""

LIGHT_WRITES = ("open_session", "renew_session", "close_session", "withdraw")
"""Steps whose commits do not wait for the disk (WAL + ``synchronous=NORMAL``: one
``fdatasync`` less, ~0.3 ms of CPU per renewal). Such a commit is visible to every
process at once and survives any process crash (it is in the OS's page cache); only a
power loss or kernel crash can undo it -- and those restart the host, which makes
every session of the old boot dead (``boot_id``), renewed or withdrawn or not. WAL
keeps commits in order, so a later FULL commit (an enqueue, a guarded write) makes
every earlier one durable too: what a lost light write could take back is never a
token or a guarded write."""

P = ParamSpec("P")
R = TypeVar("R")

_LIVE = "s.boot_id = :boot AND s.expires_at > :now"
_LEADER = f"""SELECT c.seq, c.candidate_id, c.value, s.expires_at FROM candidates c
    JOIN sessions s ON s.id = c.session_id
    WHERE c.election = :election AND {_LIVE} ORDER BY c.seq LIMIT 1"""


_TURN = f"""SELECT
    (SELECT 1 FROM candidates c JOIN sessions s ON s.id = c.session_id
        WHERE c.seq = :seq AND {_LIVE}),
    (SELECT MIN(s.expires_at) FROM candidates c JOIN sessions s ON s.id = c.session_id
        WHERE c.election = :election AND c.seq < :seq AND {_LIVE}),
    (SELECT 1 FROM candidates c LEFT JOIN sessions s ON s.id = c.session_id
        WHERE c.election = :election AND c.seq < :seq
        AND (s.id IS NULL OR NOT ({_LIVE})) LIMIT 1),
    (SELECT value FROM data WHERE key = :marker)"""
"""A ticket's turn in one statement: its own entry live?, the earliest expiry of a live
entry ahead, a dead entry ahead?, and the handoff marker (NULL key: NULL)."""


def boot_id() -> str:
    """The kernel's id of this boot; monotonic times are comparable only within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot@{round(time.time() - time.monotonic())}"


def require_existing(url: BackendURL) -> None:
    """Raises StoreUnavailable ("no tenure store at PATH") unless ``url`` names an
    existing tenure SQLite store. Opens the file read-only and creates nothing: no
    directory, database or bell file. For read-only callers (``tenure leader``,
    ``observe``, ``contenders``, ``migrate``), which should not make a store appear
    where none was; :class:`SQLiteStore` itself creates a missing store, as a
    campaigning client expects. A URL with options SQLite does not take is refused
    first (ConfigError naming them), as connecting would."""
    Options("sqlite", url, {})
    path = Path(url.path).expanduser().absolute()
    fix = "check the path (the store is created by the first candidate that campaigns)"
    if not path.is_file():
        raise StoreUnavailable(f"no tenure store at {path}; {fix}")
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'candidates'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"no tenure store at {path} ({exc}); {fix}") from None
    if row is None:
        raise StoreUnavailable(
            f"no tenure store at {path}: it is an SQLite file without tenure's tables; {fix}"
        )


@dataclass(eq=False)
class SQLiteTicket(Ticket):
    """A row of ``candidates``; ``order`` is its ``seq`` (and the token once it leads)."""


class SQLiteStore(Store[SQLiteTicket]):
    """The contract over one SQLite file shared by processes of one host."""

    limits = StoreLimits(min_ttl=0.5, max_ttl=86400.0)

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._bells = path.with_name(path.name + ".bells")
        self._bell_paths: dict[str, Path] = {}
        self._boot = boot_id()
        self._local = threading.local()
        self._board = BellBoard()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        """Each thread's connection with its owner (see :meth:`close`)."""
        self._connections_lock = threading.Lock()
        self._closed = False
        self._light_writes_allowed = False  # set by _initialise once WAL is confirmed
        self._session_id = ""
        self._ttl = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._bells.mkdir(exist_ok=True)
            self._initialise()
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise ConfigError(
                f"cannot open the SQLite store {str(path)!r}: {exc}; check that the directory "
                "is writable and the file is a tenure database"
            ) from None

    @retry(
        retry=retry_if_exception_message(match=".*locked.*"),
        wait=wait_random(0.01, 0.1),
        stop=stop_after_delay(30),
        reraise=True,
    )
    def _initialise(self) -> None:
        # Switching to WAL takes an exclusive lock without waiting on the busy handler,
        # so processes opening a new file at once retry here.
        db = self._db()
        mode = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode != "wal":
            mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        # NORMAL commits are ordered before later FULL ones only in WAL mode; where the
        # file system refuses WAL, every write waits for the disk.
        self._light_writes_allowed = mode == "wal"
        db.executescript(SCHEMA)

    @classmethod
    def from_url(cls, url: BackendURL) -> SQLiteStore:
        Options("sqlite", url, {})
        return cls(Path(url.path).expanduser())

    @property
    def description(self) -> str:
        return f"sqlite://{self.path}"

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if self._closed:
            if db is not None:  # left open by close() for this thread to close
                self._local.db = None
                db.close()
            raise TenureError(CLOSED)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            self._local.synchronous = "FULL"
            with self._connections_lock:
                self._connections.append((threading.current_thread(), db))
        return db

    def _bell(self, election: str) -> Path:
        bell = self._bell_paths.get(election)
        if bell is None:
            bell = self._bells / hashlib.sha1(election.encode()).hexdigest()[:20]
            if len(self._bell_paths) < 4096:  # a cache, bounded
                self._bell_paths[election] = bell
        return bell

    def _params(self, **extra: object) -> dict[str, object]:
        return {"boot": self._boot, "now": time.monotonic(), **extra}

    def _write(self, durable: bool = True) -> _WriteTransaction:
        """A write transaction; ``durable=False`` commits without waiting for the disk
        (``synchronous=NORMAL``, see :data:`LIGHT_WRITES`)."""
        db = self._db()
        mode = "FULL" if durable or not self._light_writes_allowed else "NORMAL"
        if getattr(self._local, "synchronous", "FULL") != mode:
            db.execute(f"PRAGMA synchronous={mode}")
            self._local.synchronous = mode
        return _WriteTransaction(db)

    # -- session ------------------------------------------------------------------

    def open_session(self, ttl: float) -> float:
        self._ttl = ttl
        session_id = uuid.uuid4().hex
        with self._write(durable=False) as db:
            self._collect_garbage(db)
            db.execute(
                "INSERT INTO sessions (id, boot_id, expires_at, ttl) VALUES (?, ?, ?, ?)",
                (session_id, self._boot, time.monotonic() + ttl, ttl),
            )
        self._session_id = session_id
        return ttl

    def renew_session(self, held: frozenset[SQLiteTicket]) -> None:
        with self._write(durable=False) as db:
            now = time.monotonic()
            renewed = db.execute(
                "UPDATE sessions SET expires_at = ? WHERE id = ? AND boot_id = ? "
                "AND expires_at > ?",
                (now + self._ttl, self._session_id, self._boot, now),
            ).rowcount
            if not renewed:
                raise SessionExpired(f"session {self._session_id} expired in {self.path}")
            if not held:
                return
            alive = {
                row[0]
                for row in db.execute(
                    "SELECT seq FROM candidates WHERE session_id = ?", (self._session_id,)
                )
            }
        for ticket in held:
            if ticket.order not in alive:
                self.report_loss(ticket, f"its row was deleted from {self.path}")

    def close_session(self) -> None:
        if not self._session_id:
            return
        with self._write(durable=False) as db:
            elections = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT election FROM candidates WHERE session_id = ?",
                    (self._session_id,),
                )
            ]
            db.execute("DELETE FROM candidates WHERE session_id = ?", (self._session_id,))
            db.execute("DELETE FROM sessions WHERE id = ?", (self._session_id,))
        self._session_id = ""
        for election in elections:
            ring(self._bell(election))

    def _collect_garbage(self, db: sqlite3.Connection) -> None:
        dead = "SELECT id FROM sessions WHERE boot_id != :boot OR expires_at <= :now"
        params = self._params()
        db.execute(f"DELETE FROM candidates WHERE session_id IN ({dead})", params)
        db.execute(f"DELETE FROM sessions WHERE id IN ({dead})", params)

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> SQLiteTicket:
        with self._write() as db:
            self._collect_garbage(db)
            alive = db.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND boot_id = ? AND expires_at > ?",
                (self._session_id, self._boot, time.monotonic()),
            ).fetchone()
            if alive is None:
                raise SessionExpired(f"session {self._session_id} expired in {self.path}")
            cursor = db.execute(
                "INSERT INTO candidates (election, candidate_id, session_id, value) "
                "VALUES (?, ?, ?, ?)",
                (election, candidate_id, self._session_id, value),
            )
            seq = cursor.lastrowid
        assert seq is not None
        ring(self._bell(election))
        return SQLiteTicket(election, candidate_id, str(seq), seq)

    def withdraw(self, ticket: SQLiteTicket) -> None:
        with self._write(durable=False) as db:
            deleted = db.execute(
                "DELETE FROM candidates WHERE seq = ?", (ticket.order,)
            ).rowcount
        if deleted:
            ring(self._bell(ticket.election))

    def _turn(self, ticket: SQLiteTicket) -> tuple[float | None, bytes | None]:
        """(None if ``ticket`` leads now, else the time at which the earliest session
        ahead of it expires; where it leads, the value of ``ticket.read_on_win`` read in
        the SAME statement that decided it -- one snapshot, which holds every commit
        before it, so the previous leader's release and the marker it wrote before).
        Raises SessionExpired if the ticket's session is dead.

        A read decides only while nobody dead is ahead. Passing over an expired
        session is decided under the write lock, after deleting it: a renewal of that
        session may have taken the lock and its ``now`` before it expired and commit
        after (a pause in between); a read would let this ticket lead while that
        renewal revives the session, so the writer's lock orders the two."""
        wake_at, dead_ahead, marker = self._turn_in(self._db(), ticket)
        if wake_at is not None:
            return wake_at, None
        if not dead_ahead:
            return None, marker
        with self._write() as db:
            self._collect_garbage(db)
            wake_at, _, marker = self._turn_in(db, ticket)
            return wake_at, (marker if wake_at is None else None)

    @staticmethod
    def _read_in(db: sqlite3.Connection, key: str | None) -> bytes | None:
        if key is None:
            return None
        row = db.execute("SELECT value FROM data WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _turn_in(
        self, db: sqlite3.Connection, ticket: SQLiteTicket
    ) -> tuple[float | None, bool, bytes | None]:
        """(earliest expiry of a live entry ahead or None, whether a dead entry is
        ahead, the ``read_on_win`` key's value) by ONE statement: one snapshot (in
        autocommit, or in ``db``'s current transaction)."""
        params = self._params(election=ticket.election, seq=ticket.order,
                              marker=ticket.read_on_win)
        mine, ahead, dead, marker = db.execute(_TURN, params).fetchone()
        if mine is None:
            raise SessionExpired(
                f"the entry of {ticket.candidate_id} in {ticket.election!r} died with "
                "its session"
            )
        return (None if ahead is None else float(ahead)), dead is not None, (
            None if marker is None else bytes(marker))

    def try_lead(self, ticket: SQLiteTicket) -> Step:
        bell = self._board.listen(self._bell(ticket.election))
        try:
            wake_at, marker = self._guard(self._turn, ticket)
        except BaseException:
            bell.close()
            raise
        if wake_at is None:
            bell.close()
            return Won(ticket.order, marker, read_done=ticket.read_on_win is not None)
        return Wait(bell, retry_at=wake_at)

    def proclaim(self, ticket: SQLiteTicket, value: bytes) -> None:
        with self._write() as db:
            self._require_leader(db, ticket, "proclaim")
            db.execute("UPDATE candidates SET value = ? WHERE seq = ?", (value, ticket.order))
        ring(self._bell(ticket.election))

    def guarded_write(self, ticket: SQLiteTicket, key: str, value: bytes) -> None:
        with self._write() as db:
            self._require_leader(db, ticket, "guarded write")
            db.execute(
                "INSERT INTO data (key, value, token) VALUES (?, ?, ?) ON CONFLICT(key) "
                "DO UPDATE SET value = excluded.value, token = excluded.token",
                (key, value, ticket.order),
            )

    def _require_leader(self, db: sqlite3.Connection, ticket: SQLiteTicket, action: str) -> None:
        row = db.execute(_LEADER, self._params(election=ticket.election)).fetchone()
        if row is None or row[0] != ticket.order:
            raise NotLeader(
                f"{action} refused by the store: {ticket.candidate_id} does not lead "
                f"election {ticket.election!r}"
            )

    def read(self, key: str) -> bytes | None:
        return self._guard(lambda: self._read_in(self._db(), key))

    # -- observing ------------------------------------------------------------------

    def _leader_row(self, election: str) -> tuple[LeaderInfo | None, float]:
        row = self._db().execute(_LEADER, self._params(election=election)).fetchone()
        if row is None:
            return None, math.inf
        return LeaderInfo(election, row[1], bytes(row[2]), int(row[0])), float(row[3])

    def leader(self, election: str) -> LeaderInfo | None:
        return self._guard(self._leader_row, election)[0]

    def contenders(self, election: str) -> list[Contender]:
        rows = self._guard(
            lambda: self._db().execute(
                f"SELECT c.seq, c.candidate_id, c.value FROM candidates c JOIN sessions s "
                f"ON s.id = c.session_id WHERE c.election = :election AND {_LIVE} "
                f"ORDER BY c.seq",
                self._params(election=election),
            ).fetchall()
        )
        return [Contender(row[1], bytes(row[2]), int(row[0])) for row in rows]

    def observe_step(self, election: str) -> tuple[LeaderInfo | None, Wait]:
        bell = self._board.listen(self._bell(election))
        try:
            current, expires_at = self._guard(self._leader_row, election)
        except BaseException:
            bell.close()
            raise
        return current, Wait(bell, retry_at=None if math.isinf(expires_at) else expires_at)

    # -- plumbing -------------------------------------------------------------------

    def _guard(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return call(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {str(self.path)!r}: {exc}") from exc

    def close(self) -> None:
        """Closes this thread's connection and those of threads that ended; a live
        thread's connection is left to it (its next step closes it and raises), since
        closing a sqlite3 connection another thread is using can crash the process."""
        with self._connections_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        me = threading.current_thread()
        for owner, db in connections:
            if owner is me or not owner.is_alive():
                db.close()
        if getattr(self._local, "db", None) is not None:
            self._local.db = None
        self._board.close()


class _WriteTransaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error); sqlite3 errors become
    StoreUnavailable."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store busy or unreadable: {exc}") from exc
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as error:
            if exc_type is None:
                raise StoreUnavailable(f"SQLite commit failed: {error}") from error
        if isinstance(exc, sqlite3.Error):
            raise StoreUnavailable(f"SQLite store error: {exc}") from exc
