"""The store-independent half of a local lab cluster: nodes, fault controls, readiness.

A :class:`Cluster` is N server processes of one store on 127.0.0.1, with ports chosen at
run time and data under a temporary directory. Each backend module (``lab.etcd``,
``lab.zookeeper``, ``lab.consul``, ``lab.redis``) subclasses :class:`Node` and
:class:`Cluster` with how to configure, start and probe its store. Start them with
:func:`tenure.conformance.lab.start_cluster`.

Promises: a cluster object is returned only once the store *serves* (a real write and
read succeeded, and for replicated stores a leader is elected); otherwise
:class:`LabError` is raised with the reason and the tail of every node's log, after the
processes are stopped. Leaving the ``with`` block stops every process and proxy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tenure.conformance.lab import ports
from tenure.conformance.lab.processes import StoreProcess, spawn
from tenure.conformance.lab.proxy import Proxy, ProxyGroup

HOST = ports.HOST
T = TypeVar("T")


class LabError(RuntimeError):
    """A lab store could not be started or controlled; the message says why and shows
    the log tail. Tests let it propagate: a store that cannot start fails the test."""


# -- small helpers -------------------------------------------------------------------

def free_port() -> int:
    """A TCP port for a lab server (see :mod:`tenure.conformance.lab.ports`)."""
    try:
        return ports.free_port()
    except ports.NoFreePort as exc:
        raise LabError(str(exc)) from None


def find_binary(name: str, env_var: str) -> str:
    """Where the ``name`` executable is: ``$env_var``, then ``$TENURE_CACHE/bin``
    (default /var/cache/tenure/bin, where scripts/install-stores puts built stores),
    then PATH. Raises :class:`LabError` naming the fix when none has it."""
    given = os.environ.get(env_var)
    if given:
        if not os.access(given, os.X_OK):
            raise LabError(f"{env_var}={given} is not an executable file")
        return given
    cache = Path(os.environ.get("TENURE_CACHE", "/var/cache/tenure")) / "bin" / name
    if os.access(cache, os.X_OK):
        return str(cache)
    found = shutil.which(name)
    if found:
        return found
    raise LabError(
        f"{name} not found (looked at ${env_var}, {cache} and PATH): "
        f"run scripts/install-stores, or set {env_var} to the binary"
    )


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Polls ``condition`` until it is true; raises :class:`LabError` naming ``what``
    after ``timeout`` seconds. Exceptions from ``condition`` count as false."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if condition():
                return
        except Exception as exc:
            last_error = f" (last error: {exc!r})"
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{last_error}")
        time.sleep(interval)


def eventually(action: Callable[[], T], timeout: float, what: str,
               interval: float = 0.1) -> T:
    """Calls ``action`` until it returns without raising and returns its result; after
    ``timeout`` seconds raises :class:`LabError` naming ``what`` and the last error.
    For waiting on a store to serve again after a fault (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise LabError(f"timed out after {timeout:.0f} s waiting for {what}: "
                               f"{exc!r}") from exc
        time.sleep(interval)


# -- nodes ---------------------------------------------------------------------------


class Node:
    """One server process of a cluster. Fault controls act on this node only.

    Subclasses set ``client_port`` (and any other ports) in ``__init__`` and implement
    :meth:`argv` and :meth:`serves`; :meth:`prepare` writes config files.
    """

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"{cluster.backend}{index + 1}"
        self.dir = cluster.base_dir / self.name
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        fixed = cluster.client_ports
        self.client_port = fixed[index] if fixed else free_port()
        self.process: StoreProcess | None = None
        # Hook for tenure.conformance.faults: the address the node binds and advertises,
        # and a command prefix (``ip netns exec NS``) that starts it in a namespace.
        self.host: str = HOST
        self.command_prefix: list[str] = []

    # -- to implement --------------------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def serves(self) -> bool:
        """One readiness probe: True when this node answers as a server."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Writes config files; called before every start."""

    def wipe(self) -> None:
        """Deletes the node's data (called by ``restart(wipe=True)`` while stopped)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {}

    # -- public --------------------------------------------------------------------

    @property
    def client_address(self) -> str:
        """``host:port`` clients of the store use for this node."""
        return f"{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.alive() else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive()

    def start(self) -> None:
        """Starts the process (no readiness wait; see :meth:`wait_serving`)."""
        if self.running:
            raise LabError(f"{self.name} is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        try:
            self.process = spawn(self.name, [*self.command_prefix, *self.argv()],
                                 self.log_path, cwd=self.dir, env=self.env())
        except OSError as exc:
            raise LabError(f"cannot start {self.name}: {exc}") from exc

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Waits until :meth:`serves`; raises :class:`LabError` with the log tail if the
        process exits or the timeout passes."""

        def check() -> bool:
            if not self.running:
                raise LabError(f"{self.name} exited")
            return self.serves()

        try:
            wait_until(check, timeout, f"{self.name} to serve on {self.client_address}")
        except LabError as exc:
            raise LabError(f"{exc}\n--- {self.name} log tail:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL (a crash): no shutdown, data as the crash left it."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: a clean shutdown."""
        if self.process is not None:
            self.process.terminate()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        if not self.running:
            raise LabError(f"cannot pause {self.name}: it is not running")
        assert self.process is not None
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None:
            self.process.resume()

    def restart(self, wipe: bool = False, timeout: float = 60.0) -> None:
        """Stops the node if it runs (SIGKILL), optionally deletes its data, starts it
        again on the same ports and waits until it serves (and, for replicated stores,
        has rejoined)."""
        self.kill()
        if wipe:
            self.wipe()
        self.start()
        self.wait_serving(timeout)

    def log_tail(self, lines: int = 40) -> str:
        if self.process is not None:
            return self.process.log_tail(lines)
        return "(never started)"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "client_address": self.client_address,
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
        }


class ClientProxy(ProxyGroup):
    """TCP proxies in front of some nodes' client ports; :attr:`url` is the backend URL
    that goes through them. ``cut``/``heal``/``latency`` act on all of them at once."""

    def __init__(self, scheme: str, proxies: list[Proxy]) -> None:
        super().__init__(proxies, f"{scheme}://" + ",".join(p.address for p in proxies))


# -- clusters ------------------------------------------------------------------------


class Cluster:
    """N nodes of one store. Use as a context manager; see the module docstring."""

    backend: ClassVar[str] = ""
    scheme: ClassVar[str] = ""
    node_class: ClassVar[type[Node]] = Node
    node_counts: ClassVar[tuple[int, ...]] = (1, 3)
    """The cluster sizes this store's lab offers (PostgreSQL: 1, or 2 = primary + standby)."""

    def __init__(self, nodes: int = 1, base_dir: Path | None = None,
                 client_ports: list[int] | None = None, **options: Any) -> None:
        """``client_ports``: fixed client ports, one per node (default: free ports chosen
        now); ``tenure lab up --fixed-ports`` uses the ports of the compose files."""
        if nodes not in self.node_counts:
            counts = " or ".join(map(str, self.node_counts))
            raise ValueError(f"{self.backend} lab: nodes must be {counts}, got {nodes!r}")
        if client_ports is not None and len(client_ports) != nodes:
            raise ValueError(f"client_ports needs {nodes} ports, got {client_ports!r}")
        self.client_ports = client_ports
        self.options = options
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix=f"tenure-lab-{self.backend}-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.proxies: list[Proxy] = []
        self.nodes: list[Node] = [self.node_class(self, i) for i in range(nodes)]
        self.start_time = 0.0
        self.isolated: set[int] = set()
        self.closed: bool = False

    # -- to implement --------------------------------------------------------------

    def serves(self) -> bool:
        """One cluster-level readiness probe (a real write and read, a leader)."""
        return all(node.serves() for node in self.nodes if node.running)

    def isolate(self, node: int) -> None:
        """Cuts node ``node`` from its peers (clients still reach it)."""
        raise LabError(f"{self.backend}: isolating a node from its peers is not supported")

    def rejoin(self, node: int) -> None:
        """Undoes :meth:`isolate`."""
        raise LabError(f"{self.backend}: isolating a node from its peers is not supported")

    # -- public --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The backend URL tenure uses: every node's client address."""
        return f"{self.scheme}://" + ",".join(n.client_address for n in self.nodes)

    def start(self, timeout: float = 90.0) -> None:
        """Starts every node and waits until the cluster serves; sets ``start_time``.
        On failure stops everything and raises :class:`LabError` with the logs."""
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_serving(timeout)
            self.wait_serving(timeout)
        except BaseException as exc:
            logs = self.logs()
            self.close()
            if isinstance(exc, LabError):
                raise LabError(f"{self.backend} x{len(self.nodes)} did not start: {exc}\n"
                               f"{logs}") from None
            raise
        self.start_time = time.monotonic() - began

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Waits until :meth:`serves` holds (e.g. after a node kill or restart)."""
        try:
            wait_until(self.serves, timeout, f"{self.backend} cluster to serve")
        except LabError as exc:
            raise LabError(f"{exc}\n{self.logs()}") from None

    def proxy(self, node: int | None = None) -> ClientProxy:
        """A TCP proxy in front of node ``node``'s client port (``None``: one in front of
        every node). Its ``url`` is the backend URL through the proxy."""
        targets = self.nodes if node is None else [self.nodes[node]]
        proxies = [Proxy((n.host, n.client_port), name=f"client->{n.name}") for n in targets]
        self.proxies.extend(proxies)
        return ClientProxy(self.scheme, proxies)

    def logs(self, lines: int = 40) -> str:
        """The tail of every node's log, one section per node."""
        return "\n".join(
            f"--- {n.name} ({n.log_path}):\n{n.log_tail(lines)}" for n in self.nodes
        )

    def describe(self) -> dict[str, Any]:
        """What ``tenure lab up --json`` prints."""
        return {
            "backend": self.backend,
            "url": self.url,
            "nodes": [n.describe() for n in self.nodes],
            "dir": str(self.base_dir),
            "start_time": round(self.start_time, 3),
        }

    def close(self) -> None:
        """Stops every node (SIGKILL after SIGCONT) and proxy; removes the temporary data
        dir unless ``TENURE_LAB_KEEP`` is set. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for p in self.proxies:
            p.close()
        for node in self.nodes:
            node.resume()
            node.kill()
        if self._own_dir and not os.environ.get("TENURE_LAB_KEEP"):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def isolated_node(self, node: int) -> Iterator[None]:
        """``with cluster.isolated_node(1): ...`` isolates, then rejoins."""
        self.isolate(node)
        try:
            yield
        finally:
            self.rejoin(node)
