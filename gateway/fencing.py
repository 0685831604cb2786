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

from tenure.errors import ConfigError, InvalidValueError, StaleToken, StoreUnavailable


class FencingGuard:
    """Highest accepted fencing token per resource, kept in memory or in a SQLite file.

    A file that cannot be opened or created is a ConfigError naming it; a file that
    fails later (disk full, locked for more than 30 s) makes ``check``, ``accept`` and
    ``highest`` raise StoreUnavailable, and records nothing."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, int] = {}
        if path is not None and not isinstance(path, str | Path):
            raise ConfigError(
                f"FencingGuard path must be a str or Path, not {type(path).__name__} {path!r}"
            )
        self._path = str(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
        if self._path is not None:
            try:
                self._db = sqlite3.connect(
                    self._path, timeout=30, isolation_level=None, check_same_thread=False
                )
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS fences (resource TEXT PRIMARY KEY, "
                    "token INTEGER NOT NULL)"
                )
            except sqlite3.Error as exc:
                self.close()
                raise ConfigError(
                    f"cannot open the fencing file {self._path!r}: {exc}; give a path in a "
                    "writable directory that exists, to a new file or an earlier FencingGuard's"
                ) from None

    def close(self) -> None:
        """Closes the file (a no-op in memory)."""
        if self._db is not None:
            self._db.close()
            self._db = None

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
        with self._lock:
            db = self._db
            if db is None:
                if token < self._memory.get(resource, token):
                    return False
                self._memory[resource] = token
                return True
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute(
                        "SELECT token FROM fences WHERE resource = ?", (resource,)
                    ).fetchone()
                    if row is not None and token < row[0]:
                        return False
                    db.execute(
                        "INSERT INTO fences (resource, token) VALUES (?, ?) "
                        "ON CONFLICT(resource) DO UPDATE SET token = excluded.token",
                        (resource, token),
                    )
                    return True
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc

    def highest(self, resource: str) -> int | None:
        """The highest token accepted for ``resource``, or None."""
        with self._lock:
            if self._db is None:
                return self._memory.get(resource)
            try:
                row = self._db.execute(
                    "SELECT token FROM fences WHERE resource = ?", (resource,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
            return None if row is None else int(row[0])

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(
            f"the fencing file {self._path!r} cannot be used: {exc}; check that it is "
            "writable, not locked for long by another process, and on a local disk"
        )
