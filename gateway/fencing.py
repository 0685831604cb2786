"""Fencing checks for downstream services.

    guard = FencingGuard("/var/lib/myservice/fence.db")   # or FencingGuard() in memory
    guard.check("orders-table", request.fencing_token)    # raises StaleToken if superseded
    apply(request)

A leader passes its ``Leadership.token`` with every write; the resource keeps the
highest token it has accepted and refuses any lower one. Since tokens of an election
strictly increase with each new leadership, a write from a superseded leader that
arrives after its successor's first write is refused -- even if the old leader does not
yet know it has lost. Equal tokens are accepted (one leader writes many times).
``check`` is atomic across threads and, with a file, across processes on one host.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from tenure.errors import InvalidValueError, StaleToken


class FencingGuard:
    """Highest accepted fencing token per resource, kept in memory or in a SQLite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, int] = {}
        self._path = str(path) if path is not None else None
        if self._path is not None:
            with self._connect() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS fences (resource TEXT PRIMARY KEY, "
                    "token INTEGER NOT NULL)"
                )

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def check(self, resource: str, token: int) -> None:
        """Records ``token`` for ``resource`` if it is >= the highest seen; otherwise
        raises StaleToken and records nothing."""
        if not self.accept(resource, token):
            raise StaleToken(
                f"fencing token {token} for resource {resource!r} is stale: token "
                f"{self.highest(resource)} was already accepted; the writer is no longer leader"
            )

    def accept(self, resource: str, token: int) -> bool:
        """Like :meth:`check`, but returns False instead of raising."""
        if not isinstance(resource, str) or not resource:
            raise InvalidValueError(f"fencing resource must be a non-empty str, got {resource!r}")
        if not isinstance(token, int) or isinstance(token, bool):
            raise InvalidValueError(f"fencing token must be an int, got {token!r}")
        if self._path is None:
            with self._lock:
                if token < self._memory.get(resource, token):
                    return False
                self._memory[resource] = token
                return True
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT token FROM fences WHERE resource = ?", (resource,)).fetchone()
            if row is not None and token < row[0]:
                db.execute("ROLLBACK")
                return False
            db.execute(
                "INSERT INTO fences (resource, token) VALUES (?, ?) "
                "ON CONFLICT(resource) DO UPDATE SET token = excluded.token",
                (resource, token),
            )
            db.execute("COMMIT")
            return True

    def highest(self, resource: str) -> int | None:
        """The highest token accepted for ``resource``, or None."""
        if self._path is None:
            with self._lock:
                return self._memory.get(resource)
        with self._connect() as db:
            row = db.execute("SELECT token FROM fences WHERE resource = ?", (resource,)).fetchone()
            return None if row is None else int(row[0])
