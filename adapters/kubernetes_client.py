"""URL parsing, credentials, Lease requests and per-Lease watches for the Kubernetes backend.

The official ``kubernetes`` package loads credentials exactly as kubectl and client-go
do (kubeconfig contexts, client certificates, tokens, exec plugins, the in-cluster
service account with its rotating token) and builds the TLS connection pool from them.
Requests are then sent through that pool as plain JSON: the adapter needs six verbs on
one resource, and reading the Lease as a dict keeps every field client-go writes
(``MicroTime``, annotations) byte for byte, without the generated models' conversions.

Every call is bounded by ``timeout`` (default 5 s; renewals by TTL/4). Errors: 404 is
None / False, 409 raises :class:`Conflict`, 401/403 a ConfigError naming the RBAC rule
needed, anything else (connection refused, timeout, 5xx) StoreUnavailable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from tenure.config import BackendURL
from tenure.errors import ConfigError, StoreUnavailable
from tenure.options import Options
from tenure.store import EventSignal

log = logging.getLogger("tenure.kubernetes")

Lease = dict[str, Any]
"""A ``coordination.k8s.io/v1`` Lease as the apiserver returns it (JSON)."""

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WATCH_SECONDS = 30
"""Server-side timeout of one watch request; the watch is then resumed from its last
resourceVersion (so an idle watcher costs one request per 30 s)."""

OPTIONS = {
    "kubeconfig": "path of a kubeconfig file (default $KUBECONFIG, ~/.kube/config, or the "
                  "in-cluster service account)",
    "context": "kubeconfig context (default: its current-context)",
    "timeout": "seconds per request (default 5)",
    "layout": "tenure (default: one session Lease per client) or native (client-go's "
              "LeaseLock: every held election Lease is renewed itself)",
}


class Conflict(Exception):
    """409: the resourceVersion precondition failed, or the object already exists."""


@dataclass(frozen=True)
class KubeConfig:
    """A parsed ``kubernetes://`` URL with its loaded credentials."""

    namespace: str
    description: str
    configuration: Any
    timeout: float
    native: bool


def _kubeconfig_namespace(path: str | None, context: str | None) -> str | None:
    with contextlib.suppress(ConfigException, OSError, TypeError, KeyError):
        contexts, current = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=path)
        chosen = current
        if context is not None:
            chosen = next((c for c in contexts if c.get("name") == context), None)
        if chosen:
            namespace = chosen.get("context", {}).get("namespace")
            return str(namespace) if namespace else None
    return None


def parse_url(url: BackendURL) -> KubeConfig:
    """Reads ``kubernetes://[namespace]?kubeconfig=..&context=..&timeout=..&layout=..``
    and loads the credentials (nothing is sent to the apiserver). Without
    ``kubeconfig=``: ``$KUBECONFIG`` or ``~/.kube/config`` if present, else the pod's
    service account (in-cluster). ConfigError names the input and the fix."""
    opts = Options("kubernetes", url, OPTIONS)
    timeout = opts.duration("timeout", 5.0, low=0, high=300)
    native = opts.choice("layout", "tenure", ("tenure", "native")) == "native"
    context = opts.optional("context")
    path = opts.optional("kubeconfig")
    configuration = k8s_client.Configuration()
    default_path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
        Path("~/.kube/config").expanduser())
    in_cluster = (path is None and context is None and not Path(default_path).exists()
                  and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"kubernetes option kubeconfig={path!r}: no such file; give the "
                          "path of a kubeconfig (kubectl config view --raw > FILE)")
    source = "in-cluster service account" if in_cluster else (path or default_path)
    try:
        if in_cluster:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        else:
            if path is None and not Path(default_path).exists():
                raise ConfigError(
                    f"kubernetes backend {url.redacted}: no kubeconfig= given, "
                    f"{default_path} does not exist and this is not a pod (no "
                    "KUBERNETES_SERVICE_HOST); add ?kubeconfig=PATH")
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(Path(path).expanduser()) if path else default_path,
                context=context, client_configuration=configuration, persist_config=False)
    except ConfigException as exc:
        raise ConfigError(f"kubernetes backend: cannot load credentials from {source}"
                          f"{f' (context {context!r})' if context else ''}: {exc}; check "
                          "kubeconfig= and context= (kubectl config get-contexts)") from None
    namespace = url.path.strip("/")
    if not namespace:
        namespace = (_incluster_namespace() if in_cluster
                     else _kubeconfig_namespace(path or default_path, context)) or "default"
    if len(namespace) > 63 or not _LABEL.fullmatch(namespace):
        raise ConfigError(
            f"kubernetes backend URL namespace {namespace!r} is not a Kubernetes namespace "
            "name (1-63 of a-z, 0-9 and '-', starting and ending alphanumeric); write "
            "kubernetes://NAMESPACE?kubeconfig=...")
    description = f"kubernetes://{namespace} at {configuration.host}"
    return KubeConfig(namespace, description, configuration, timeout, native)


def _incluster_namespace() -> str | None:
    with contextlib.suppress(OSError):
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or None
    return None


class LeaseApi:
    """The Lease verbs of one namespace, over the client library's connection pool."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        rest = k8s_client.rest.RESTClientObject(config.configuration)
        self._pool: urllib3.PoolManager = rest.pool_manager
        self._base = (f"{config.configuration.host.rstrip('/')}/apis/coordination.k8s.io/v1/"
                      f"namespaces/{config.namespace}/leases")
        self.requests = 0
        """Requests sent (watch requests included)."""
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for auth in self.config.configuration.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        configuration = self.config.configuration
        if configuration.username and configuration.password and "authorization" not in headers:
            headers.update(urllib3.util.make_headers(
                basic_auth=f"{configuration.username}:{configuration.password}"))
        return headers

    def request(self, method: str, path: str, action: str, body: Any = None,
                timeout: float | None = None, stream: bool = False) -> Any:
        """One request; returns the decoded JSON (or the open response if ``stream``),
        None on 404. Raises Conflict, ConfigError (401/403) or StoreUnavailable."""
        url = self._base + path
        with self._lock:
            self.requests += 1
        limit = timeout or self.config.timeout
        try:
            response = self._pool.request(
                method, url, body=None if body is None else json.dumps(body).encode(),
                headers=self._headers(), preload_content=False, retries=False,
                timeout=urllib3.Timeout(connect=limit, read=WATCH_SECONDS + limit
                                        if stream else limit))
        except urllib3.exceptions.HTTPError as exc:
            raise StoreUnavailable(f"{self.config.description}: {action}: {exc}") from None
        status = response.status
        if stream and status == 200:
            return response
        try:
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise StoreUnavailable(f"{self.config.description}: {action}: {exc}") from None
        finally:
            response.release_conn()
        if status == 404:
            return None
        if status == 409:
            raise Conflict(action)
        if status in (401, 403):
            raise ConfigError(
                f"{self.config.description}: {action} refused ({status}: "
                f"{_reason(data)}); the credentials need get, list, watch, create, update "
                f"and delete on leases.coordination.k8s.io in namespace "
                f"{self.config.namespace!r} (a Role and RoleBinding)")
        if not 200 <= status < 300:
            raise StoreUnavailable(
                f"{self.config.description}: {action}: HTTP {status}: {_reason(data)}")
        return json.loads(data) if data else None

    def get(self, name: str, action: str = "read a Lease") -> Lease | None:
        found: Lease | None = self.request("GET", f"/{quote(name)}", action)
        return found

    def create(self, lease: Lease, action: str = "create a Lease") -> Lease:
        made: Lease = self.request("POST", "", action, lease)
        return made

    def replace(self, lease: Lease, action: str = "update a Lease",
                timeout: float | None = None) -> Lease | None:
        """PUT with the Lease's ``metadata.resourceVersion`` as precondition; None if
        the Lease is gone, Conflict if it changed."""
        name = lease["metadata"]["name"]
        done: Lease | None = self.request("PUT", f"/{quote(name)}", action, lease, timeout)
        return done

    def delete(self, name: str, resource_version: str | None,
               action: str = "delete a Lease") -> bool:
        """DELETE, only if unchanged since ``resource_version`` (when given); False if
        already gone, Conflict if it changed."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        return self.request("DELETE", f"/{quote(name)}", action, body) is not None

    def list(self, label_selector: str, action: str = "list Leases") -> list[Lease]:
        found = self.request("GET", "?" + urlencode({"labelSelector": label_selector}), action)
        return list((found or {}).get("items") or [])

    def watch(self, name: str, resource_version: str) -> Any:
        """An open watch response on Lease ``name`` from ``resource_version``."""
        query = urlencode({
            "watch": "1", "fieldSelector": f"metadata.name={name}",
            "resourceVersion": resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS)})
        return self.request("GET", "?" + query, f"watch Lease {name}", stream=True)


def _reason(data: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(data).get("message", ""))[:300]
    return data[:300].decode(errors="replace")


def watch_events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON events of a watch response, one per line."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class LeaseWatch:
    """ONE watch stream on one Lease for every waiter, observer and guard of this client.

    :meth:`arm` returns only once the stream has a starting point (a read of the Lease
    whose resourceVersion the watch resumes from), so a caller that reads after
    :meth:`arm` cannot miss a change: the watch delivers everything after that read.
    A 410 Gone (history compacted) re-reads the Lease and fires every signal; a broken
    stream fires every signal too (changes may have been missed) and reconnects. The
    stream ends when the store closes, or once nothing listens for 30 s.
    """

    def __init__(self, api: LeaseApi, name: str, on_end: Callable[[LeaseWatch], None]) -> None:
        self.api = api
        self.name = name
        self._on_end = on_end
        self._cond = threading.Condition()
        self._signals: set[EventSignal] = set()
        self._guards: dict[int, Callable[[Lease | None], None]] = {}
        self._started = False
        self._stopped = False
        self._idle_since = time.monotonic()
        self._response: Any = None
        self.relists = 0
        """Re-reads after 410 Gone (or a first read) -- for tests."""
        self.events = 0
        self._thread = threading.Thread(target=self._run, name=f"tenure-k8s-watch-{name}",
                                        daemon=True)
        self._thread.start()

    def add(self, signal: EventSignal, timeout: float) -> None:
        """Fires ``signal`` on the Lease's next change (or a broken stream) until
        :meth:`discard`; returns once the stream has its starting point."""
        with self._cond:
            self._signals.add(signal)
            self._cond.wait_for(lambda: self._started or self._stopped, timeout)
            if self._stopped or not self._started:
                signal.fire()  # the caller steps again and sees what is wrong

    def guard(self, key: int, callback: Callable[[Lease | None], None]) -> None:
        """Calls ``callback(lease)`` on every change until :meth:`unguard` (held leases)."""
        with self._cond:
            self._guards[key] = callback

    def unguard(self, key: int) -> None:
        with self._cond:
            self._guards.pop(key, None)
            if not self._signals and not self._guards:
                self._idle_since = time.monotonic()

    def discard(self, signal: EventSignal) -> None:
        with self._cond:
            self._signals.discard(signal)
            if not self._signals and not self._guards:
                self._idle_since = time.monotonic()

    def _fire(self, lease: Lease | None, guards: bool = True) -> None:
        with self._cond:
            signals = list(self._signals)
            callbacks = list(self._guards.values()) if guards else []
        for signal in signals:
            signal.fire()
        for callback in callbacks:
            try:
                callback(lease)
            except Exception:  # a guard must never end the watch
                log.exception("kubernetes Lease guard failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            response = self._response
            self._cond.notify_all()
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        self._fire(None, guards=False)

    def _idle(self) -> bool:
        with self._cond:
            return (not self._signals and not self._guards
                    and time.monotonic() - self._idle_since > WATCH_SECONDS)

    def _start_point(self) -> str:
        """Reads the Lease (a quorum read) and returns the resourceVersion to watch from."""
        lease = self.api.get(self.name, f"read Lease {self.name} to watch it")
        if lease is not None:
            return str(lease["metadata"]["resourceVersion"])
        # Absent: watch from the list's resourceVersion, so its creation is seen.
        found = self.api.request("GET", "?" + urlencode(
            {"fieldSelector": f"metadata.name={self.name}"}), f"list Lease {self.name}")
        return str((found or {}).get("metadata", {}).get("resourceVersion", "0"))

    def _run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while True:
            with self._cond:
                if self._stopped:
                    break
            if self._idle():
                break
            try:
                if resource_version is None:
                    resource_version = self._start_point()
                    self.relists += 1
                    with self._cond:
                        first = not self._started
                        self._started = True
                        self._cond.notify_all()
                    if not first:
                        self._fire(self.api.get(self.name))  # may have missed changes
                response = self.api.watch(self.name, resource_version)
                with self._cond:
                    self._response = response
                    if self._stopped:
                        break
                failures = 0
                for event in watch_events(response):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # history compacted: re-list
                            resource_version = None
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        resource_version = str(rv)
                    if kind == "BOOKMARK":
                        continue
                    self.events += 1
                    self._fire(None if kind == "DELETED" else obj)
            except (StoreUnavailable, ConfigError, urllib3.exceptions.HTTPError, OSError,
                    ValueError) as exc:
                with self._cond:
                    if self._stopped:
                        break
                failures += 1
                log.debug("kubernetes watch on %s broke: %s", self.name, exc)
                self._fire(None, guards=False)  # waiters step again (and see the error)
                resource_version = None if failures > 1 else resource_version
                with self._cond:
                    self._cond.wait(min(2.0, 0.1 * failures))
            finally:
                with self._cond:
                    response, self._response = self._response, None
                if response is not None:
                    with contextlib.suppress(Exception):
                        response.release_conn()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._on_end(self)
        self._fire(None, guards=False)

    @property
    def alive(self) -> bool:
        with self._cond:
            return not self._stopped


class Watches:
    """The :class:`LeaseWatch` of each watched Lease of one store."""

    def __init__(self, api: LeaseApi) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._watches: dict[str, LeaseWatch] = {}
        self._closed = False
        self.started = 0
        """Watch streams started (one per Lease while it is watched)."""

    def get(self, name: str) -> LeaseWatch:
        with self._lock:
            watch = self._watches.get(name)
            if watch is None or not watch.alive:
                watch = LeaseWatch(self.api, name, self._ended)
                self._watches[name] = watch
                self.started += 1
                if self._closed:
                    watch.stop()
            return watch

    def arm(self, *names: str) -> EventSignal:
        """One signal that fires when any of the Leases ``names`` changes."""
        watches = [self.get(name) for name in names]

        def close() -> None:
            for watch in watches:
                watch.discard(signal)

        signal = EventSignal(on_close=close)
        for watch in watches:
            watch.add(signal, self.api.config.timeout)
        return signal

    def _ended(self, watch: LeaseWatch) -> None:
        with self._lock:
            if self._watches.get(watch.name) is watch:
                del self._watches[watch.name]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watches = list(self._watches.values())
        for watch in watches:
            watch.stop()

