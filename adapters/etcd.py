"""The etcd v3 backend: ``etcd://host:port[,host:port...][?prefix=..&user=..&...]``.

Mapping of the contract (keys under ``prefix``, default ``/tenure``):

* session: ONE lease per store (``LeaseGrant`` with the TTL in whole seconds), shared
  by every election. :meth:`EtcdStore.renew_session` sends ONE ``LeaseKeepAlive``
  request, whatever the number of elections held: keepalive traffic is one request per
  TTL/3 per client. Its timeout is at most TTL/4, so a hung member cannot hang the
  renewer. A keepalive answered with ``TTL <= 0`` means the lease is gone
  (SessionExpired); etcd never revives an expired lease (its lessor refuses to renew
  an expired lease and waits for the revoke).
* candidate: the key ``<prefix>/<election>/#<lease-id-hex>``, bound to the lease and
  created in a transaction only if absent (``create_revision == 0``). The ``#`` ends
  the election name (names cannot contain it), so election ``a``'s range never
  includes the keys of election ``a/b``. Its value is ``candidate_id`` LF ``value``.
* leader: the key with the lowest create revision under ``<prefix>/<election>/#``,
  by a linearizable range sorted by create revision (limit 1). The fencing token is
  that key's create revision: etcd revisions only grow (also across member restarts
  and leader changes), and a key created later always gets a higher one. The mod
  revision is not a token: it changes on every proclaim.
* waiting: a waiter reads (one read-only, hence linearizable, transaction) that its
  own key still exists and which key is its predecessor (greatest create revision
  below its own), then watches ONLY that key for deletion, from the revision of that
  read + 1 (nothing is missed in between), and re-checks when it fires. One leader
  change thus wakes one waiter, not all of them (no herd): ``watch_notifications``
  counts the watch responses with events this store received.
* proclaim / guarded write: transactions that commit only if our key still has the
  create revision it had when we won. That suffices: when ``await_turn`` returned,
  a linearizable read saw no key with a lower create revision, and no such key can
  appear later (new keys get higher revisions), so while our key exists *with that
  create revision* (a deleted and re-created key gets a new one) we are the lowest,
  i.e. the leader. For a ticket that never won, the transaction also compares that
  every key of the election has a create revision >= ours. Guarded writes go to
  ``<prefix>/data/<key>`` (no lease: the data outlives the writer). A refused
  transaction proves the ticket no longer leads: it is reported as a loss.
* observe: ``await_change`` reads the leader (linearizable range), then watches the
  election range from that read's revision + 1, and re-reads on every event. After a
  broken watch stream (reconnect, member failover) or a compaction it re-reads with a
  range before watching again, so the latest state is never missed (PITFALLS).
* loss: besides the core's deadline and lease expiry (keepalive TTL <= 0), a watch on
  each held key reports its deletion (e.g. by an operator), and a refused proclaim or
  guarded write reports the loss. The key watches are best effort: not re-armed after a
  broken watch stream (the validity deadline never depends on them).

Connection: pyetcd's ``MultiEndpointEtcd3Client`` over every listed member. A failed
call (unavailable, timed out, or an isolated member's ``context deadline exceeded``)
moves the client to the next member (round robin), so the next call goes there; calls
are NOT retried inside the adapter -- the core retries renewals, and waiters re-read. Any
watch created before such a failover is treated as broken: waiters re-read and watch
again on the new member. gRPC keepalive pings (every 10 s) detect dead connections.

Clock reasoning: a keepalive SENT at ``t`` and answered with a positive TTL was
received by the etcd leader's lessor after ``t``, which then set the lease to expire
no earlier than ``t + TTL`` on its clock; the core stays valid only until
``t + TTL x (1 - drift)`` on ours. Expiry is late rather than early: the lessor checks
for expired leases about every 500 ms, and an etcd leader change extends every lease
by a full TTL (etcd#11058: a 2 s key seen deleted 14-20 s after a leader kill).
Safety never depends on prompt expiry, only liveness does (the next leader waits).

Limits: TTLs are whole seconds from 2 s (the server raises any TTL below
ceil(1.5 x election timeout), 2 s with default settings; a server that would change
the requested TTL is reported as a ConfigError at the first campaign) to 86400 s.
Tokens restart from low values only if the cluster's data is wiped (restoring a
snapshot keeps revisions). Prefixes of two deployments must not nest.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pyetcd
from pyetcd import etcdrpc
from pyetcd.exceptions import Etcd3Exception, RevisionCompactedError
from pyetcd.utils import prefix_range_end
from pyetcd.watch import WatchResponse

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

R = TypeVar("R")

DEFAULT_PREFIX = "/tenure"
DEFAULT_TIMEOUT = 5.0
MAX_TTL = 86400
PASSWORD_ENV = "TENURE_ETCD_PASSWORD"
OPTIONS = {
    "prefix": f"key prefix (default {DEFAULT_PREFIX})",
    "user": "user name (also as user@ in the URL)",
    "password_file": f"file holding the password (or ${PASSWORD_ENV})",
    "ca": "CA certificate file (PEM); enables TLS",
    "cert": "client certificate file (PEM); needs key",
    "key": "client private key file (PEM); needs cert",
    "timeout": f"seconds per request (default {DEFAULT_TIMEOUT:g})",
}
GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # etcd accepts pings every 5 s or slower (--grpc-keepalive-min-time).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]
MEMBER_FAILURES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,  # an isolated member: "context deadline exceeded"
    grpc.StatusCode.CANCELLED,
}
_CREATE = etcdrpc.Compare.CREATE
_BY_CREATE = etcdrpc.RangeRequest.CREATE


@dataclass(frozen=True)
class EtcdConfig:
    """Everything :class:`EtcdStore` needs, validated; ``password`` is never shown."""

    hosts: tuple[tuple[str, int], ...]
    description: str
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    user: str | None = None
    password: str | None = None
    credentials: grpc.ChannelCredentials | None = None

    def __repr__(self) -> str:
        return f"EtcdConfig({self.description})"


def parse_url(url: BackendURL) -> EtcdConfig:
    """Validates every option of an ``etcd://`` URL; ConfigError names what is wrong."""
    options = dict(url.options)
    known = ", ".join(["ttl", "drift", *OPTIONS])
    if "password" in options:
        raise ConfigError(
            "the etcd backend takes no 'password' option (it would show in URLs and logs); "
            f"put the password in a file named by password_file=, or in ${PASSWORD_ENV}"
        )
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for the etcd backend; known: {known}"
        )
    if url.path not in ("", "/"):
        raise ConfigError(
            f"etcd URLs take no path (got {url.path!r}); use ?prefix={url.path} for a key prefix"
        )
    prefix = options.get("prefix", DEFAULT_PREFIX).rstrip("/")
    if not prefix or "#" in prefix or not prefix.isprintable() or " " in prefix:
        raise ConfigError(
            f"etcd option prefix={options.get('prefix')!r} must be a non-empty key prefix "
            "of printable characters without spaces or '#', e.g. /tenure"
        )
    timeout = _timeout(options.get("timeout"))
    user = _user(url, options.get("user"))
    password = _password(url, options.get("password_file"))
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
    return EtcdConfig(
        hosts=url.hosts, description=url.redacted, prefix=prefix, timeout=timeout,
        user=user, password=password, credentials=_tls(options),
    )


def _timeout(text: str | None) -> float:
    if text is None:
        return DEFAULT_TIMEOUT
    return parse_duration_option("etcd", "timeout", text, 0.0, 300.0)


def _user(url: BackendURL, option: str | None) -> str | None:
    if option is not None and url.username is not None and option != url.username:
        raise ConfigError(
            f"etcd user given twice ({url.username!r} in the URL, {option!r} as user=); "
            "give it once"
        )
    user = option if option is not None else url.username
    if user == "":
        raise ConfigError("etcd option user= is empty; give a user name or leave it out")
    return user


def _password(url: BackendURL, password_file: str | None) -> str | None:
    if url.password is not None:
        return url.password
    if password_file is not None:
        try:
            return Path(password_file).expanduser().read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"etcd option password_file={password_file!r} cannot be read "
                f"({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}); "
                "check the path and its permissions"
            ) from None
    return os.environ.get(PASSWORD_ENV) or None


def _read_pem(options: dict[str, str], name: str) -> bytes | None:
    path = options.get(name)
    if path is None:
        return None
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"etcd option {name}={path!r} cannot be read ({exc.strerror}); give the path "
            f"of a PEM file ({OPTIONS[name]})"
        ) from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"etcd option {name}={path!r} is not a PEM file ({OPTIONS[name]})")
    return data


def _tls(options: dict[str, str]) -> grpc.ChannelCredentials | None:
    ca, cert, key = (_read_pem(options, name) for name in ("ca", "cert", "key"))
    if (cert is None) != (key is None):
        given, missing = ("cert", "key") if key is None else ("key", "cert")
        raise ConfigError(
            f"etcd option {given}= needs {missing}= too: a client certificate and its "
            "private key go together"
        )
    if ca is None and cert is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def _pack(candidate_id: str, value: bytes) -> bytes:
    return candidate_id.encode() + b"\n" + value


def _unpack(election: str, kv: Any) -> LeaderInfo:
    candidate_id, _, value = bytes(kv.value).partition(b"\n")
    return LeaderInfo(election, candidate_id.decode(), value, int(kv.create_revision))


def _compare_create(key: bytes, result: int, revision: int, range_end: bytes = b"") -> Any:
    return etcdrpc.Compare(
        key=key, range_end=range_end, target=_CREATE, result=result, create_revision=revision
    )


def _range_op(request: Any) -> Any:
    return etcdrpc.RequestOp(request_range=request)


class EtcdStore(Store):
    """The contract over an etcd v3 cluster (see the module docstring)."""

    limits = StoreLimits(min_ttl=2, max_ttl=MAX_TTL, ttl_step=1)

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__()
        self.config = config
        self._lock = threading.Lock()
        self._epoch = 0  # bumped when a member fails: watches made before are suspect
        self._lease = 0
        self._ttl = 0
        self._closed = False
        self.keepalives = 0
        """Keepalive requests sent (one per renewal, whatever the number of elections)."""
        self.watch_notifications = 0
        """Watch responses carrying events delivered to this store's watches."""
        self.watches_created = 0
        """Watches this store created (a waiter creates one per predecessor it waits on)."""
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

    @classmethod
    def from_url(cls, url: BackendURL) -> EtcdStore:
        return cls(parse_url(url))

    @property
    def description(self) -> str:
        return self.config.description

    @property
    def member(self) -> str:
        """``host:port`` of the member this store currently talks to."""
        with self._lock:
            return str(self._client.endpoint_in_use.netloc)

    # -- plumbing -------------------------------------------------------------------

    def _authenticate(self) -> None:
        request = etcdrpc.AuthenticateRequest(name=self.config.user, password=self.config.password)
        try:
            response = self._rpc(
                "authenticate", lambda: self._stub("authstub").Authenticate(
                    request, self.config.timeout
                ), reauthenticate=False,
            )
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

    def _stub(self, name: str) -> Any:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the etcd store {self.description} is closed")
            return getattr(self._client, name)

    def _metadata(self) -> Any:
        return self._client.metadata

    def _member_failed(self) -> None:
        """Moves to the next member (round robin); drops the stubs and watches of the
        failed one (gRPC reconnects a member's channel by itself when it is used again)."""
        with self._lock:
            labels = list(self._client.endpoints)
            current = labels.index(self._client._current_endpoint_label)
            self._client._current_endpoint_label = labels[(current + 1) % len(labels)]
            self._client._clear_old_stubs()
            self._epoch += 1

    def _rpc(self, what: str, call: Callable[[], R], *, idempotent: bool = False,
             reauthenticate: bool = True) -> R:
        """Runs one gRPC call; failures become StoreUnavailable (SessionExpired when the
        lease is gone), after moving to the next member so the next call fails over. An
        UNAVAILABLE call is tried once on each other member at once if it is idempotent
        (a read, a keepalive) or was never sent (no connection); a timed-out call is
        never retried here (it would overrun the caller's time budget)."""
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
                    self._authenticate()  # tokens expire and are kept per member
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
                    # Not an outage: retrying cannot help, so campaigns must not wait it out.
                    raise ConfigError(
                        f"etcd {self.description} refused {what}: {details}; give a user "
                        "with access (user option, password_file or TENURE_ETCD_PASSWORD)"
                    ) from None
                raise StoreUnavailable(
                    f"etcd {self.description}: {what} failed: {code.name}: {details}"
                ) from None
            except Etcd3Exception as exc:
                raise StoreUnavailable(
                    f"etcd {self.description}: {what} failed: no member available "
                    f"({exc.__class__.__name__})"
                ) from None

    def _range(self, request: Any, what: str) -> Any:
        return self._rpc(what, lambda: self._stub("kvstub").Range(
            request, self.config.timeout, metadata=self._metadata()), idempotent=True)

    def _txn(self, what: str, compare: list[Any], success: list[Any],
             failure: list[Any] | None = None, *, read_only: bool = False) -> Any:
        request = etcdrpc.TxnRequest(compare=compare, success=success, failure=failure or [])
        return self._rpc(what, lambda: self._stub("kvstub").Txn(
            request, self.config.timeout, metadata=self._metadata()), idempotent=read_only)

    def _election_range(self, election: str) -> tuple[bytes, bytes]:
        start = f"{self.config.prefix}/{election}/#".encode()
        return start, prefix_range_end(start)

    def _candidate_key(self, election: str, lease: int) -> bytes:
        return self._election_range(election)[0] + f"{lease:x}".encode()

    def _data_key(self, key: str) -> bytes:
        return f"{self.config.prefix}/data/{key}".encode()

    def _wait_for_event(
        self, key: bytes, start_revision: int, *, range_end: bytes = b"",
        deletes_only: bool = False, until: float | None = None,
        cancelled: threading.Event | None = None,
    ) -> str:
        """Watches ``key`` (or the range) from ``start_revision`` and blocks until an
        event arrives ("event"), the watch breaks or fails over ("broken": the caller
        re-reads before watching again), ``until`` passes ("deadline") or ``cancelled``
        is set ("cancelled"). Checks the last two every WAIT_SLICE."""
        fired = threading.Event()
        outcome = ["broken"]

        def on_response(response: object) -> None:
            if isinstance(response, WatchResponse) and response.events:
                with self._lock:
                    self.watch_notifications += 1
                outcome[0] = "event"
            fired.set()

        epoch = self._epoch
        watcher = self._stub("watcher")
        filters = [etcdrpc.WatchCreateRequest.NOPUT] if deletes_only else None
        try:
            watch_id = watcher.add_callback(
                key, on_response, range_end=range_end or None,
                start_revision=start_revision, filters=filters,
            )
        except RevisionCompactedError:
            return "broken"
        except (grpc.RpcError, Etcd3Exception) as exc:
            self._member_failed()
            raise StoreUnavailable(
                f"etcd {self.description}: watch failed ({exc.__class__.__name__})"
            ) from None
        with self._lock:
            self.watches_created += 1
        try:
            while True:
                remaining = WAIT_SLICE if until is None else until - time.monotonic()
                if fired.wait(max(0.0, min(WAIT_SLICE, remaining))):
                    return outcome[0]
                if cancelled is not None and cancelled.is_set():
                    return "cancelled"
                if until is not None and time.monotonic() >= until:
                    return "deadline"
                if self._epoch != epoch:
                    return "broken"
        finally:
            with contextlib.suppress(Exception):
                watcher.cancel(watch_id)

    # -- session --------------------------------------------------------------------

    def open_session(self, ttl: float) -> None:
        requested = round(ttl)
        response = self._rpc("lease grant", lambda: self._stub("leasestub").LeaseGrant(
            etcdrpc.LeaseGrantRequest(TTL=requested), self.config.timeout,
            metadata=self._metadata()))
        if response.error:
            raise StoreUnavailable(f"etcd {self.description}: lease grant: {response.error}")
        if requested != response.TTL:
            self._revoke(response.ID)
            raise ConfigError(
                f"etcd at {self.description} grants {response.TTL} s leases when asked for "
                f"{requested} s: its minimum lease TTL is {response.TTL} s (ceil(1.5 x "
                f"election timeout)); use ttl={response.TTL} or more, or lower the "
                "server's --election-timeout"
            )
        self._ttl = requested
        self._lease = response.ID

    def renew_session(self, held: frozenset[Ticket]) -> frozenset[Ticket]:
        lease = self._lease
        if not lease:
            raise SessionExpired(f"etcd {self.description}: no session")
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease)
        timeout = min(self.config.timeout, self._ttl / 4)

        def keepalive() -> Any:
            stream = self._stub("leasestub").LeaseKeepAlive(
                iter([request]), timeout, metadata=self._metadata())
            try:
                return next(stream, None)
            finally:
                stream.cancel()

        with self._lock:
            self.keepalives += 1
        response = self._rpc("lease keepalive", keepalive, idempotent=True)
        if response is None:
            raise StoreUnavailable(f"etcd {self.description}: keepalive got no answer")
        if response.TTL <= 0:
            raise SessionExpired(f"etcd {self.description}: lease {lease:x} has expired")
        return frozenset()

    def close_session(self) -> None:
        lease, self._lease = self._lease, 0
        if lease:
            self._revoke(lease)

    def _revoke(self, lease: int) -> None:
        """Ends a lease and every key bound to it (best effort: it expires anyway)."""
        with contextlib.suppress(StoreUnavailable):
            self._rpc("lease revoke", lambda: self._stub("leasestub").LeaseRevoke(
                etcdrpc.LeaseRevokeRequest(ID=lease), min(2.0, self.config.timeout),
                metadata=self._metadata()))

    # -- candidates -----------------------------------------------------------------

    def enqueue(self, election: str, candidate_id: str, value: bytes) -> Ticket:
        lease = self._lease
        if not lease:
            raise SessionExpired(f"etcd {self.description}: no session")
        key = self._candidate_key(election, lease)
        put = etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
            key=key, value=_pack(candidate_id, value), lease=lease))
        stale = etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))
        create = [_compare_create(key, etcdrpc.Compare.EQUAL, 0)]
        for attempt in range(1, 5):
            try:
                response = self._txn("enqueue", create, [put], [stale])
            except SessionExpired:
                raise
            except StoreUnavailable:
                # The put may have committed unheard (e.g. across an etcd leader change).
                # Trying again is safe: a key found there is deleted, then re-created.
                if attempt < 4:
                    continue
                with contextlib.suppress(StoreUnavailable):  # else it would queue (and
                    self._txn("enqueue cleanup", [], [stale])  # maybe lead) unattended
                raise
            if response.succeeded:
                return Ticket(election, candidate_id, key.decode(), int(response.header.revision))
            # Found a key of an earlier attempt, or of an earlier campaign of this client
            # whose withdrawal failed (a client campaigns once per election at a time):
            # the failure branch deleted it.
        raise StoreUnavailable(f"etcd {self.description}: enqueue kept finding a stale key")

    def _turn(self, ticket: Ticket) -> tuple[bytes | None, int]:
        """(the key just ahead of ``ticket``, or None if it leads; the read's revision),
        by one linearizable read-only transaction. SessionExpired if the entry is gone."""
        key = ticket.key.encode()
        start, end = self._election_range(ticket.election)
        mine = etcdrpc.RangeRequest(key=key, keys_only=True)
        ahead = etcdrpc.RangeRequest(
            key=start, range_end=end, keys_only=True, limit=1,
            sort_target=_BY_CREATE, sort_order=etcdrpc.RangeRequest.DESCEND,
            max_create_revision=ticket.order - 1,  # >= 1: revision 1 is the empty store
        )
        response = self._txn(
            "await turn", [], [_range_op(mine), _range_op(ahead)], read_only=True)
        own = response.responses[0].response_range.kvs
        if not own or own[0].create_revision != ticket.order:
            raise SessionExpired(
                f"the entry of {ticket.candidate_id} in {ticket.election!r} is gone from "
                "etcd (its lease expired or it was deleted)"
            )
        before = response.responses[1].response_range.kvs
        return (bytes(before[0].key) if before else None), int(response.header.revision)

    def await_turn(
        self, ticket: Ticket, deadline: float | None, cancelled: threading.Event
    ) -> int:
        pause = _Backoff()
        while True:
            if cancelled.is_set():
                raise CampaignCancelled(f"campaign in {ticket.election!r} cancelled")
            try:
                ahead, revision = self._turn(ticket)
                if ahead is None:
                    ticket.extra["won"] = True
                    self._guard_key(ticket, revision)
                    return ticket.order
                if deadline is not None and time.monotonic() >= deadline:
                    raise CampaignTimeout(f"campaign in {ticket.election!r} timed out")
                outcome = self._wait_for_event(
                    ahead, revision + 1, deletes_only=True, until=deadline, cancelled=cancelled
                )
            except SessionExpired:
                raise
            except StoreUnavailable:
                if deadline is not None and time.monotonic() >= deadline:
                    raise CampaignTimeout(f"campaign in {ticket.election!r} timed out") from None
                outcome = "broken"
            if outcome == "broken":
                pause.wait(deadline, cancelled)
            elif outcome == "event":
                pause.reset()

    def _guard_key(self, ticket: Ticket, revision: int) -> None:
        """Best effort: a watch on our own key (from the winning read's revision + 1)
        reports its deletion -- by an operator, or lease expiry we have not heard of --
        as a loss. Not re-armed after a broken watch stream: the deadline still holds."""

        def on_response(response: object) -> None:
            if (isinstance(response, WatchResponse) and response.events
                    and not ticket.extra.get("withdrawn")):
                self._report_loss(ticket, "its key was deleted from etcd")

        with contextlib.suppress(StoreUnavailable, grpc.RpcError, Etcd3Exception):
            watcher = self._stub("watcher")
            watch_id = watcher.add_callback(
                ticket.key.encode(), on_response, start_revision=revision + 1,
                filters=[etcdrpc.WatchCreateRequest.NOPUT],
            )
            ticket.extra["guard"] = (watcher, watch_id)

    def withdraw(self, ticket: Ticket) -> None:
        key = ticket.key.encode()
        ticket.extra["withdrawn"] = True
        guard = ticket.extra.pop("guard", None)
        if isinstance(guard, tuple):
            with contextlib.suppress(Exception):
                guard[0].cancel(guard[1])
        self._txn(
            "withdraw", [_compare_create(key, etcdrpc.Compare.EQUAL, ticket.order)],
            [etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))],
        )

    def _guarded(self, ticket: Ticket, action: str, put: Any) -> None:
        """Commits ``put`` only if ``ticket`` leads (see the module docstring)."""
        key = ticket.key.encode()
        compare = [_compare_create(key, etcdrpc.Compare.EQUAL, ticket.order)]
        if not ticket.extra.get("won"):
            start, end = self._election_range(ticket.election)
            compare.append(
                _compare_create(start, etcdrpc.Compare.GREATER, ticket.order - 1, end)
            )
        response = self._txn(action, compare, [etcdrpc.RequestOp(request_put=put)])
        if not response.succeeded:
            reason = f"{action} refused by etcd: {ticket.candidate_id} no longer leads"
            if ticket.extra.get("won"):
                self._report_loss(ticket, reason)
            raise NotLeader(f"{reason} election {ticket.election!r}")

    def proclaim(self, ticket: Ticket, value: bytes) -> None:
        # The put keeps the lease: a put without one would detach the key from it.
        lease = int(ticket.key.rsplit("#", 1)[1], 16)
        self._guarded(ticket, "proclaim", etcdrpc.PutRequest(
            key=ticket.key.encode(), value=_pack(ticket.candidate_id, value), lease=lease))

    def guarded_write(self, ticket: Ticket, key: str, value: bytes) -> None:
        self._guarded(ticket, "guarded write",
                      etcdrpc.PutRequest(key=self._data_key(key), value=value))

    def read(self, key: str) -> bytes | None:
        response = self._range(etcdrpc.RangeRequest(key=self._data_key(key)), "read")
        return bytes(response.kvs[0].value) if response.kvs else None

    # -- observing ------------------------------------------------------------------

    def _leader_at(self, election: str) -> tuple[LeaderInfo | None, int]:
        start, end = self._election_range(election)
        response = self._range(etcdrpc.RangeRequest(
            key=start, range_end=end, limit=1, sort_target=_BY_CREATE,
            sort_order=etcdrpc.RangeRequest.ASCEND), "leader")
        current = _unpack(election, response.kvs[0]) if response.kvs else None
        return current, int(response.header.revision)

    def leader(self, election: str) -> LeaderInfo | None:
        return self._leader_at(election)[0]

    def contenders(self, election: str) -> list[Contender]:
        start, end = self._election_range(election)
        response = self._range(etcdrpc.RangeRequest(
            key=start, range_end=end, sort_target=_BY_CREATE,
            sort_order=etcdrpc.RangeRequest.ASCEND), "contenders")
        infos = (_unpack(election, kv) for kv in response.kvs)
        return [Contender(info.candidate_id, info.value, info.token) for info in infos]

    def await_change(
        self, election: str, known: LeaderInfo | None, deadline: float
    ) -> LeaderInfo | None:
        start, end = self._election_range(election)
        pause = _Backoff()
        while True:
            current, revision = self._leader_at(election)
            if current != known or time.monotonic() >= deadline:
                return current
            outcome = self._wait_for_event(start, revision + 1, range_end=end, until=deadline)
            if outcome == "broken":
                pause.wait(deadline, None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()


class _Backoff:
    """Growing pauses (50 ms to 1 s) between re-reads after a failure; wakes on cancel."""

    def __init__(self) -> None:
        self.delay = 0.05

    def reset(self) -> None:
        self.delay = 0.05

    def wait(self, deadline: float | None, cancelled: threading.Event | None) -> None:
        delay = self.delay
        if deadline is not None:
            delay = max(0.0, min(delay, deadline - time.monotonic()))
        self.delay = min(1.0, self.delay * 2)
        (cancelled or threading.Event()).wait(delay)
