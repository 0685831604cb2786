"""How :mod:`tenure.adapters.zookeeper` reaches a ZooKeeper ensemble: its URL options,
and one kazoo client at a time.

The client retries its connection forever (50 ms, growing to 1 s); kazoo keeps the
session across reconnects to any listed server and, once the server has expired it,
makes a new one by itself. A store that only reads starts a client asking for a 10 s
session; :meth:`ZooKeeperConnection.open` restarts it with the TTL. Calls run with a
timeout (at most the TTL once a session is open); kazoo's errors become tenure's:
connection trouble StoreUnavailable, an expired session SessionExpired, a refused ACL
a ConfigError (retrying cannot help). Errors about nodes (NoNodeError, ...) are the
caller's to handle.
"""

from __future__ import annotations

import contextlib
import math
import select as select_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import Connect, Sync

from tenure.config import BackendURL
from tenure.errors import ConfigError, SessionExpired, StoreUnavailable
from tenure.options import Options

PASSWORD_ENV = "TENURE_ZOOKEEPER_DIGEST_PASSWORD"
DEFAULT_PREFIX = "/tenure"
DEFAULT_TIMEOUT = 10.0
OPTIONS = {
    "digest_password_file": f"file holding the digest password (or ${PASSWORD_ENV})",
    "digest_user": "user for digest authentication and creator-only ACLs",
    "prefix": f"znode under the URL path holding tenure's nodes (default {DEFAULT_PREFIX})",
    "timeout": f"seconds to wait for a connection and for calls (default {DEFAULT_TIMEOUT:g})",
    "layout": "election nodes: tenure (default) or native (Curator's LeaderSelector/"
              "InterProcessMutex nodes, also kazoo's Election/Lock)",
}
LAYOUTS = ("tenure", "native")
OBSERVER_SESSION_MS = 10_000
"""Session timeout asked for by a store used only for reading (no candidates)."""


@dataclass(frozen=True)
class ZooKeeperConfig:
    """Everything :class:`ZooKeeperConnection` needs, validated; ``auth`` is never shown."""

    hosts: str
    root: str
    description: str
    auth: tuple[str, str] | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    native: bool = False
    """``layout=native``: election nodes are Curator's (see the adapter); elections are
    then ``<URL path>/<election>`` and ``prefix`` holds only guarded-write data."""
    base: str = ""
    """The URL path alone (native elections live under it, not under ``prefix``)."""


def parse_url(url: BackendURL) -> ZooKeeperConfig:
    """Validates every option of a ``zookeeper://`` URL; ConfigError names what is wrong."""
    try:
        opts = Options("zookeeper", url, OPTIONS)
    except ConfigError as exc:
        if "session_timeout" in url.options:
            raise ConfigError(f"{exc}; the session timeout IS the TTL: use ttl=") from None
        raise
    root = _check_path(url.path, "the URL path") + _check_path(
        opts.text("prefix", DEFAULT_PREFIX), "option prefix")
    if not root:
        raise ConfigError("option prefix must not be '/'; give a node such as /tenure")
    timeout = opts.duration("timeout", DEFAULT_TIMEOUT, low=0.0, high=300.0)
    native = opts.choice("layout", "tenure", LAYOUTS) == "native"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.hosts)
    return ZooKeeperConfig(hosts, root, url.redacted, _digest_auth(opts), timeout,
                           native=native, base=_check_path(url.path, "the URL path"))


def _check_path(value: str, what: str) -> str:
    """A ZooKeeper path prefix: ``/a/b`` (or "" for the root)."""
    path = value.rstrip("/") if value != "/" else ""
    if path and (not path.startswith("/") or any(
        part in ("", ".", "..") or (part == "zookeeper" and i == 0)
        for i, part in enumerate(path[1:].split("/"))
    )):
        raise ConfigError(
            f"{what} {value!r} is not a usable ZooKeeper path; write it like /apps/tenure "
            "(no empty, '.' or '..' segments, not under /zookeeper)"
        )
    return path


def _digest_auth(opts: Options) -> tuple[str, str] | None:
    """(user, password) for digest auth, or None. The password comes from exactly one of
    the URL, ``digest_password_file`` or ``$TENURE_ZOOKEEPER_DIGEST_PASSWORD``."""
    user = opts.user("digest_user")
    if user is None:
        if opts.url.password is not None or opts.given("digest_password_file"):
            raise ConfigError("a digest password is given without a user; add digest_user=NAME")
        return None  # the environment variable alone is not for a URL without a user
    if ":" in user:
        raise ConfigError(f"digest user {user!r} must contain no ':'")
    password = opts.secret("digest_password", env=PASSWORD_ENV)
    if not password:
        raise ConfigError(f"digest user {user!r} has no password; put it in a file named by "
                          f"digest_password_file=, in ${PASSWORD_ENV}, or in the URL")
    return user, password


class ZooKeeperConnection:
    """One started kazoo client (see the module docstring); ``on_state`` gets kazoo's
    state changes on kazoo's connection thread, so it must not block."""

    def __init__(self, config: ZooKeeperConfig, on_state: Callable[[str], None]) -> None:
        self.config = config
        self.call_timeout = config.timeout
        self.negotiated_ms = 0
        """The session timeout the server granted in the latest handshake."""
        self._on_state = on_state
        self._lock = threading.Lock()  # starting and stopping
        self._changed = threading.Condition()
        self._zk: KazooClient | None = None
        self._session_ms = 0
        self._closed = False
        self._last_sync: tuple[KazooClient, float, Any] | None = None
        """(client, send time, pending answer) of the renewal sync sent last."""
        self.pings_skipped = 0
        """kazoo pings not sent because a renewal had just touched the session."""
        self.quiet_selects = 0
        """kazoo connection-loop waits lengthened to the end of a renewal's cover."""

    @property
    def current(self) -> KazooClient | None:
        """The running client, if any (never starts one)."""
        return self._zk

    def client(self, session_ms: int | None = None) -> KazooClient:
        """The started client; with ``session_ms``, one asking for that session timeout
        (a running client asking for another is stopped first)."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"{self.config.description}: this store is closed")
            if self._zk is not None and session_ms not in (None, self._session_ms):
                self._stop()
            return self._zk or self._start(session_ms or OBSERVER_SESSION_MS)

    def _start(self, session_ms: int) -> KazooClient:
        auth = self.config.auth
        zk = KazooClient(
            hosts=self.config.hosts, timeout=session_ms / 1000,
            auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None,
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                              "max_jitter": 0.05, "max_delay": 1.0},
        )
        # kazoo has no public way to read the negotiated session timeout: wrap its
        # private handshake call and record it from each Connect answer.
        invoke = zk._connection._invoke

        def recording_invoke(timeout: float, request: Any, xid: int | None = None) -> Any:
            result = invoke(timeout, request, xid)
            if isinstance(request, Connect):
                self.negotiated_ms = int(result[0].time_out)
            return result

        zk._connection._invoke = recording_invoke
        # kazoo pings after a third of the session timeout without a request. While
        # renewals run (every third of the TTL), the renewal sync sent last is normally
        # answered when kazoo's ping falls due: it touched the session and proved the
        # connection, so the ping is skipped -- one request per renewal period, not two.
        # A renewal covers for kazoo's pings only once answered, and only until half the
        # timeout after it was SENT (_ping_cover_until); a renewal still unanswered (a
        # stalled or silent server) lets kazoo ping exactly as without this, so a silent
        # connection is dropped, and kazoo tries the next server, as soon as before, and
        # a late answer costs no more than it costs kazoo's own ping. A renewal sync never
        # counts as kazoo's outstanding ping: kazoo drops the connection when one is
        # unanswered at its next read check (a third of the timeout minus jitter), sooner
        # than the renewal's own wait. Should renewals stop, kazoo pings at the end of
        # the last one's cover: the server hears from us at least every half timeout.
        # Private kazoo names again: it has no option to let requests stand for pings.
        send_ping = zk._connection._send_ping
        self._last_sync = None

        def ping_unless_renewed(connect_timeout: float) -> None:
            if time.monotonic() < self._ping_cover_until(zk):
                self.pings_skipped += 1
                return
            send_ping(connect_timeout)

        zk._connection._send_ping = ping_unless_renewed
        zk.handler.select = self._connection_select(zk, zk.handler.select)
        zk.add_listener(self._state_changed)
        try:
            zk.start(timeout=self.config.timeout)
        except (KazooTimeoutError, KazooException) as exc:
            zk.close()
            detail = (f"no ZooKeeper server answered within {self.config.timeout:g} s; check "
                      "the hosts and that the ensemble has a quorum (or raise ?timeout=)"
                      if isinstance(exc, KazooTimeoutError) else f"cannot connect: {exc!r}")
            raise StoreUnavailable(f"{self.config.description}: {detail}") from None
        self._zk, self._session_ms = zk, session_ms
        return zk

    def _ping_cover_until(self, zk: KazooClient) -> float:
        """Until when the renewal sync sent last on ``zk`` stands for kazoo's ping: half
        the session timeout after its send, once it was answered without error (-inf
        before). Read on kazoo's connection thread, which sets the answer."""
        last = self._last_sync
        if last is None or last[0] is not zk or not last[2].successful():
            return -math.inf
        return last[1] + self.negotiated_ms / 2000

    def _connection_select(self, zk: KazooClient,
                           original: Callable[..., Any]) -> Callable[..., Any]:
        """kazoo's connection waits in ``handler.select`` (kazoo's ``selector_select``):
        for its loop (``[socket, wake-up pipe]`` until its next ping is due) and before
        every read and write of the socket (twice per answer, once per request). This
        one keeps its answers and:

        * polls with one ``poll()`` call: ``selector_select`` makes, registers and closes
          an epoll object per wait (five system calls and the selectors module's Python,
          four waits per renewal). Like it, no limit on the descriptor's number, and a
          descriptor that hung up or failed is ready as epoll reports it (readable if
          asked to read, else writable); an invalid one goes to kazoo's (its error).
        * lets the loop's wait run to the end of the answered renewal's cover
          (``_ping_cover_until``) if that is later and no ping of kazoo's is
          outstanding: waking at kazoo's ping time would only skip the ping (one
          wake-up per renewal period). Anything to send or read still wakes it at once;
          an outstanding ping (kazoo's read check drops a connection whose ping is
          unanswered at the timeout) or an unanswered renewal keeps kazoo's timeout.
        """
        conn = zk._connection

        def select(rlist: list[Any], wlist: list[Any], xlist: list[Any],
                   timeout: float | None = None) -> Any:
            if xlist or timeout is None:
                return original(rlist, wlist, xlist, timeout)
            if len(rlist) == 2 and not wlist and not conn.ping_outstanding.is_set():
                quiet = self._ping_cover_until(zk) - time.monotonic()
                if quiet > timeout:
                    timeout = quiet
                    self.quiet_selects += 1
            try:
                poller = select_module.poll()
                for obj in rlist:
                    poller.register(obj, select_module.POLLIN)
                for obj in wlist:
                    poller.register(obj, select_module.POLLOUT | (
                        select_module.POLLIN if obj in rlist else 0))
                ready = dict(poller.poll(timeout * 1000))
            except (ValueError, TypeError):  # a closed descriptor: kazoo's error
                return original(rlist, wlist, xlist, timeout)
            if not ready:
                return [], [], []
            if any(event & select_module.POLLNVAL for event in ready.values()):
                return original(rlist, wlist, xlist, 0)
            readable = [obj for obj in rlist
                        if ready.get(obj.fileno(), 0) & ~select_module.POLLOUT]
            writable = [obj for obj in wlist if obj not in readable
                        and ready.get(obj.fileno(), 0) & ~select_module.POLLIN]
            return readable, writable, []

        return select

    def _state_changed(self, state: str) -> None:
        with self._changed:
            self._changed.notify_all()
        self._on_state(state)

    def open(self, ttl: float,
             before_touch: Callable[[KazooClient], None] | None = None) -> int:
        """Connects a client whose session timeout is ``ttl`` and touches its session by
        one ``sync`` sent after this call began (``before_touch`` runs once connected,
        before it); returns the session id. A server that grants another timeout is a
        ConfigError naming its bound."""
        session_ms = math.ceil(ttl * 1000)
        zk = self.client(session_ms)
        self.call_timeout = min(self.config.timeout, ttl)
        with self._changed:  # after an expiry kazoo connects with a new session
            if not self._changed.wait_for(lambda: zk.connected or self._closed,
                                          self.config.timeout) or self._closed:
                raise StoreUnavailable(f"{self.config.description}: not connected to any "
                                       "ZooKeeper server")
        if before_touch is not None:
            before_touch(zk)
        session = self.touch(zk)
        if self.negotiated_ms != session_ms:
            granted = self.negotiated_ms / 1000
            self.stop()
            raise ConfigError(
                f"TTL {ttl:g} s: the ZooKeeper server at {self.config.description} granted a "
                f"session timeout of {granted:g} s instead (it allows "
                f"{'at most' if granted < ttl else 'at least'} {granted:g} s: its "
                "minSessionTimeout/maxSessionTimeout, by default 2-20 x tickTime); choose a "
                "TTL in the server's range, or change the servers' tickTime or "
                "min/maxSessionTimeout"
            )
        return session

    def touch(self, zk: KazooClient, timeout: float | None = None) -> int:
        """One ``sync`` round trip (the server resets the session's expiry on it; on a
        follower it also goes through the ensemble's leader, which a ping does not:
        a follower cut from the leader still answers pings until it notices, while
        the leader expires the session); returns the session it went on: kazoo moves
        from one session to the next only forward, so the session current at the
        answer is the one the request was sent on. Sent as kazoo's own Sync request,
        answered on kazoo's connection thread (``sync_async`` adds a hop through a
        worker thread). Answered, it stands for kazoo's next ping (see _start); it is
        never marked as kazoo's outstanding ping, so a late answer does not drop the
        connection."""
        pending = zk.handler.async_result()
        sent = time.monotonic()
        self._last_sync = (zk, sent, pending)
        zk._call(Sync(self.config.root), pending)
        self.wait(pending, timeout)
        client_id = zk.client_id  # None while disconnected
        if client_id is None:
            raise StoreUnavailable(f"{self.config.description}: disconnected after a sync")
        return int(client_id[0])

    def call(self, start: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Runs a kazoo ``*_async`` call and waits for its answer (see the module docstring)."""
        return self.wait(start(*args), timeout)  # kazoo's *_async report errors in the answer

    def wait(self, pending: Any, timeout: float | None = None) -> Any:
        """Waits for the answer of a started kazoo call (see the module docstring)."""
        wait = self.call_timeout if timeout is None else timeout
        where = self.config.description
        try:
            return pending.get(timeout=wait)
        except SessionExpiredError:
            raise SessionExpired(f"{where}: the ZooKeeper session expired") from None
        except KazooTimeoutError:
            raise StoreUnavailable(f"{where}: no answer within {wait:g} s") from None
        except (ConnectionLoss, ConnectionClosedError) as exc:
            raise StoreUnavailable(f"{where}: connection lost ({exc!r})") from None
        except NoAuthError:
            raise ConfigError(
                f"{where}: ZooKeeper refused access to a node under {self.config.root} "
                "(ACL); connect with the digest credentials that created it"
            ) from None

    def stop(self) -> None:
        """Stops the client: its session is closed at once (its ephemeral nodes go)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        zk, self._zk = self._zk, None
        if zk is not None:
            for end in (zk.stop, zk.close):
                with contextlib.suppress(Exception):  # best effort: the session expires
                    end()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop()
        with self._changed:
            self._changed.notify_all()
