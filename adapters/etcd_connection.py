"""How :mod:`tenure.adapters.etcd` reaches an etcd cluster: its URL options (also the
key layout: ``layout=tenure``, the default, or ``layout=native``, etcd's own
``concurrency.Election``), and pyetcd's ``MultiEndpointEtcd3Client`` over every listed
member.

A failed call (unavailable, timed out, or an isolated member's ``context deadline
exceeded``) moves the client to the next member (round robin), so the next call goes
there; :attr:`EtcdConnection.epoch` counts these moves and ``on_failover`` tells the
store, whose watches on the old member may hang without breaking. Watches go over one
stream per member that requires a leader (``hasleader``): etcd ends it when the member
loses its leader, e.g. when it is isolated. The watch and keepalive streams run on
grpc.aio in one loop thread (:mod:`tenure.adapters.etcd_streams`: a sync stream polls
every 0.1 s while idle); unary calls go over pyetcd's sync channel. Calls are not
retried here, except that an UNAVAILABLE call that is idempotent (a read, a keepalive)
or was never sent is tried once on each other member at once; the core retries
renewals and steps. Lease keepalives go over one stream kept open per lease and member
(:class:`KeepaliveStream`). gRPC keepalive pings (every 10 s) detect dead connections. A user's
auth token expires and is kept per member: a call refused for its token authenticates
once more. Refused credentials and permissions are ConfigErrors (retrying cannot help).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

# GRPC_ENABLE_FORK_SUPPORT is left alone on purpose. grpcio's wheels enable gRPC's
# pthread_atfork handlers by default; with this client's watch and keepalive threads
# inside gRPC they skip themselves ("Other threads are currently calling into gRPC,
# skipping fork() handlers") and a fork()ed child could die of SIGABRT before its exec.
# The cure is not to fork: tenure starts its processes with vfork + exec
# (tenure.childproc, tenure.guard_exec). Setting the variable here would not be
# reliable (grpc reads it when it is first imported, possibly by pyetcd or by the
# application before this module) and would override the application's own choice
# for its gRPC code and leak into its child processes' environment.
import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd.exceptions import Etcd3Exception, RevisionCompactedError

from tenure.adapters.etcd_streams import KeepaliveStream, StreamLoop, WatchStream
from tenure.config import BackendURL
from tenure.errors import ConfigError, SessionExpired, StoreUnavailable
from tenure.options import Options

R = TypeVar("R")


DEFAULT_PREFIX = "/tenure"
DEFAULT_TIMEOUT = 5.0
PASSWORD_ENV = "TENURE_ETCD_PASSWORD"
OPTIONS = {
    "prefix": f"key prefix (default {DEFAULT_PREFIX})",
    "user": "user name (also as user@ in the URL)",
    "password_file": f"file holding the password (or ${PASSWORD_ENV})",
    "ca": "CA certificate file (PEM); enables TLS",
    "cert": "client certificate file (PEM); needs key",
    "key": "client private key file (PEM); needs cert",
    "timeout": f"seconds per request (default {DEFAULT_TIMEOUT:g})",
    "layout": "election keys: tenure (default) or native (etcd's concurrency.Election, "
              "the layout of etcdctl elect)",
    "native_prefix": "layout=native only: text put before the election name to form the "
                     "recipe's prefix (default none; / joins NewElection(s, \"/NAME\"))",
}
LAYOUTS = ("tenure", "native")
GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # etcd accepts pings every 5 s or slower (--grpc-keepalive-min-time).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    # No BDP probing: it sizes flow-control windows for bulk transfers, and etcd's
    # messages are small; on each keepalive answer it sent a PING for etcd to answer
    # (idle bench, 4 interleaved pairs: client 2.78 -> 2.16, store 1.50 -> 1.22 s/min).
    ("grpc.http2.bdp_probe", 0),
]
MEMBER_FAILURES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,  # an isolated member: "context deadline exceeded"
    grpc.StatusCode.CANCELLED,
}


@dataclass(frozen=True)
class EtcdConfig:
    """Everything :class:`EtcdConnection` needs, validated; ``password`` is never shown."""

    hosts: tuple[tuple[str, int], ...]
    description: str
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    user: str | None = None
    password: str | None = None
    credentials: grpc.ChannelCredentials | None = None
    native: bool = False
    """``layout=native``: election keys are etcd's own recipe's (see the adapter)."""
    native_prefix: str = ""

    def __repr__(self) -> str:
        return f"EtcdConfig({self.description})"


def parse_url(url: BackendURL) -> EtcdConfig:
    """Validates every option of an ``etcd://`` URL; ConfigError names what is wrong."""
    opts = Options("etcd", url, OPTIONS)
    if url.path not in ("", "/"):
        raise ConfigError(
            f"etcd URLs take no path (got {url.path!r}); use ?prefix={url.path} for a key prefix"
        )
    prefix = opts.text("prefix", DEFAULT_PREFIX).rstrip("/")
    if not prefix or "#" in prefix or not prefix.isprintable() or " " in prefix:
        raise ConfigError(
            f"etcd option prefix={opts.optional('prefix')!r} must be a non-empty key prefix "
            "of printable characters without spaces or '#', e.g. /tenure"
        )
    timeout = opts.duration("timeout", DEFAULT_TIMEOUT, low=0, high=300)
    native = opts.choice("layout", "tenure", LAYOUTS) == "native"
    native_prefix = opts.text("native_prefix", "")
    if opts.given("native_prefix") and not native:
        raise ConfigError(
            "etcd option native_prefix= applies to layout=native only; add layout=native "
            "or remove native_prefix"
        )
    if not native_prefix.isprintable() or " " in native_prefix:
        raise ConfigError(
            f"etcd option native_prefix={native_prefix!r} must be printable characters "
            "without spaces, e.g. / (the election name follows it)"
        )
    user = opts.user()
    password = opts.secret("password", env=PASSWORD_ENV)
    if password is not None and user is None:
        raise ConfigError(
            "an etcd password is given but no user; add user= to the URL options "
            "(or user@ before the host)"
        )
    if user is not None and password is None:
        raise ConfigError(
            f"etcd user {user!r} needs a password: give password_file=PATH, set "
            f"${PASSWORD_ENV}, or put it in tenure.toml [options]"
        )
    ca = opts.pem("ca")
    cert, key = opts.pem_pair("cert", "key")
    credentials = None if ca is None and cert is None else grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert)
    return EtcdConfig(
        hosts=url.hosts, description=url.redacted, prefix=prefix, timeout=timeout,
        user=user, password=password, credentials=credentials, native=native,
        native_prefix=native_prefix,
    )


class EtcdConnection:
    """pyetcd's client over every member of one cluster (see the module docstring)."""

    def __init__(self, config: EtcdConfig, on_failover: Callable[[], None]) -> None:
        self.config = config
        self.description = config.description
        self.epoch = 0
        """Bumped when a call failed and the client moved to the next member."""
        self._on_failover = on_failover
        self._lock = threading.Lock()
        self._closed = False
        self._streams: StreamLoop | None = None  # the aio loop of both streams, made on first use
        self._watcher: WatchStream | None = None  # the watch stream, made by _watch_stream
        self._keepalives: KeepaliveStream | None = None
        self._keepalive_lock = threading.Lock()  # one keepalive at a time on the stream
        endpoints = [
            pyetcd.Endpoint(
                host, port, secure=config.credentials is not None, creds=config.credentials,
                time_retry=0, opts=GRPC_OPTIONS,  # we pick members (pyetcd shuns for 300 s)
            )
            for host, port in config.hosts
        ]
        self._client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=endpoints, timeout=config.timeout, failover=True
        )
        if config.user is not None:
            try:
                self._authenticate()
            except BaseException:
                self.close()
                raise

    @property
    def member(self) -> str:
        """``host:port`` of the member the client currently talks to."""
        with self._lock:
            return str(self._client.endpoint_in_use.netloc)

    def _authenticate(self) -> None:
        request = etcdrpc.AuthenticateRequest(name=self.config.user, password=self.config.password)
        try:
            response = self.rpc("authenticate", lambda: self._stub("authstub").Authenticate(
                request, self.config.timeout), reauthenticate=False)
        except StoreUnavailable as exc:
            if "authentication failed" in str(exc) or "not enabled" in str(exc):
                raise ConfigError(
                    f"etcd at {self.description} refused user {self.config.user!r}: "
                    f"{str(exc).split(': ', 1)[-1]}; check the user and its password "
                    f"(password_file= or ${PASSWORD_ENV})"
                ) from None
            raise
        with self._lock:
            self._client.metadata = (("token", response.token),)
            stale, self._watcher = self._watcher, None  # a stream keeps its first token
        if stale is not None:
            with contextlib.suppress(Exception):
                stale.close()

    def _stub(self, name: str) -> Any:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the etcd store {self.description} is closed")
            return getattr(self._client, name)

    def _member_failed(self) -> None:
        """Moves to the next member (round robin) and drops the failed one's stubs and
        watch stream (gRPC reconnects a member's channel by itself when used again)."""
        with self._lock:
            labels = list(self._client.endpoints)
            current = labels.index(self._client.endpoint_in_use.netloc)
            # pyetcd has no public way to pick the member; this setter also drops its stubs.
            self._client._current_endpoint_label = labels[(current + 1) % len(labels)]
            stale, self._watcher = self._watcher, None  # a new stream on the next watch
            self.epoch += 1
        if stale is not None:
            with contextlib.suppress(Exception):
                stale.close()
        self._on_failover()

    def _stream_loop(self) -> StreamLoop:
        """The loop of the watch and keepalive streams (see etcd_streams). Under the lock."""
        if self._closed:
            raise StoreUnavailable(f"the etcd store {self.description} is closed")
        if self._streams is None:
            self._streams = StreamLoop(self.config.credentials, GRPC_OPTIONS)
        return self._streams

    def _watch_stream(self) -> WatchStream:
        """The watch stream to the current member, made on first use and again once
        it ended. Its watches require a leader: the member ends them once it has none
        (it is isolated, its stream would stay open without events)."""
        with self._lock:
            loop = self._stream_loop()
            if self._watcher is None or self._watcher.ended:
                metadata = (*(self._client.metadata or ()), ("hasleader", "true"))
                self._watcher = WatchStream(loop, self._client.endpoint_in_use.netloc,
                                            metadata, self.config.timeout)
            return self._watcher

    def rpc(self, what: str, call: Callable[[], R], *, idempotent: bool = False,
            reauthenticate: bool = True) -> R:
        """Runs one gRPC call; failures become StoreUnavailable (SessionExpired when the
        lease is gone), after moving to the next member so the next call fails over. An
        UNAVAILABLE call is tried once on each other member at once if it is idempotent
        or was never sent (no connection); a timed-out call is never retried here (it
        would overrun the caller's time budget)."""
        tries = len(self.config.hosts)
        attempt, authenticated = 0, not reauthenticate
        while True:
            try:
                return call()
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if (not authenticated and self.config.user is not None
                        and ("auth token" in details
                             or code == grpc.StatusCode.UNAUTHENTICATED)):
                    authenticated = True
                    self._authenticate()
                    continue
                if code in MEMBER_FAILURES:
                    self._member_failed()
                attempt += 1
                unsent = "failed to connect" in details
                if (code == grpc.StatusCode.UNAVAILABLE and (idempotent or unsent)
                        and attempt < tries):
                    continue
                if "lease not found" in details:
                    raise SessionExpired(
                        f"etcd {self.description}: {what}: the session's lease expired"
                    ) from None
                if code == grpc.StatusCode.PERMISSION_DENIED or "user name is empty" in details:
                    raise ConfigError(
                        f"etcd {self.description} refused {what}: {details}; give a user "
                        f"with access (user option, password_file or {PASSWORD_ENV})"
                    ) from None
                raise StoreUnavailable(
                    f"etcd {self.description}: {what} failed: {code.name}: {details}"
                ) from None
            except Etcd3Exception as exc:
                raise StoreUnavailable(
                    f"etcd {self.description}: {what} failed: no member available "
                    f"({exc.__class__.__name__})"
                ) from None

    def range(self, request: Any, what: str) -> Any:
        """One linearizable Range (idempotent)."""
        return self.rpc(what, lambda: self._stub("kvstub").Range(
            request, self.config.timeout, metadata=self._client.metadata), idempotent=True)

    def txn(self, what: str, compare: list[Any], success: list[Any],
            failure: list[Any] | None = None, *, read_only: bool = False) -> Any:
        """One transaction (idempotent only if ``read_only``)."""
        request = etcdrpc.TxnRequest(compare=compare, success=success, failure=failure or [])
        return self.rpc(what, lambda: self._stub("kvstub").Txn(
            request, self.config.timeout, metadata=self._client.metadata), idempotent=read_only)

    def grant(self, ttl: int) -> Any:
        """A new lease of ``ttl`` seconds (the response: its ID and the granted TTL)."""
        return self.rpc("lease grant", lambda: self._stub("leasestub").LeaseGrant(
            etcdrpc.LeaseGrantRequest(TTL=ttl), self.config.timeout,
            metadata=self._client.metadata))

    def keepalive(self, lease: int, timeout: float) -> Any:
        """ONE keepalive of ``lease`` (the answer's TTL, <= 0 if it is gone), or None."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease)

        def call() -> Any:
            with self._keepalive_lock:
                with self._lock:
                    loop = self._stream_loop()
                    key = (lease, self.epoch, self._client.metadata)
                    stream, stale = self._keepalives, None
                    if stream is None or stream.key != key:
                        stale, stream = stream, None
                        stream = self._keepalives = KeepaliveStream(
                            loop, self._client.endpoint_in_use.netloc,
                            self._client.metadata or (), key)
                if stale is not None:
                    stale.close()
                try:
                    answer = stream.send(request, timeout)
                except BaseException:
                    self._drop_keepalives(stream)
                    raise
                if answer is None:
                    self._drop_keepalives(stream)
                return answer
        return self.rpc("lease keepalive", call, idempotent=True)

    def _drop_keepalives(self, stream: KeepaliveStream) -> None:
        with self._lock:
            if self._keepalives is stream:
                self._keepalives = None
        stream.close()

    def revoke(self, lease: int) -> None:
        """Ends a lease and every key bound to it (best effort: it expires anyway)."""
        with contextlib.suppress(StoreUnavailable):
            self.rpc("lease revoke", lambda: self._stub("leasestub").LeaseRevoke(
                etcdrpc.LeaseRevokeRequest(ID=lease), min(2.0, self.config.timeout),
                metadata=self._client.metadata))

    def watch(self, key: bytes, start_revision: int, on_response: Callable[[object], None],
              *, range_end: bytes = b"", deletes_only: bool = False) -> Callable[[], None] | None:
        """Watches ``key`` (or the range) from ``start_revision``, calling
        ``on_response`` with each response and once when the stream ends (None, an
        error, a compaction); returns the watch's cancel, or None if it could not be
        made (history compacted, closed, or the member failed: moved to the next)."""
        filters = [etcdrpc.WatchCreateRequest.NOPUT] if deletes_only else None
        try:
            watcher = self._watch_stream()
            watch_id = watcher.add_callback(
                key, on_response, range_end=range_end or None,
                start_revision=start_revision, filters=filters,
            )
        except (RevisionCompactedError, StoreUnavailable):
            return None
        except (grpc.RpcError, Etcd3Exception):
            self._member_failed()
            return None

        def cancel() -> None:
            with contextlib.suppress(Exception):
                watcher.cancel(watch_id)
        return cancel

    def close(self) -> None:
        """Closes every member's channel. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
            keepalives, self._keepalives = self._keepalives, None
            streams, self._streams = self._streams, None
        with contextlib.suppress(Exception):
            if keepalives is not None:
                keepalives.close()
            if watcher is not None:
                watcher.close()
            if streams is not None:
                streams.close()
            self._client.close()
