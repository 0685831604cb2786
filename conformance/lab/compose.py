"""The Docker Compose files of ``compose/`` as lab clusters (``pytest --stores=docker``).

Each backend has ``compose/BACKEND-1.yml`` and ``compose/BACKEND-3.yml`` with fixed host
ports (:data:`FIXED_PORTS`); ``tenure lab up BACKEND --fixed-ports`` prints the same
URLs. :func:`start_compose_cluster` brings a file up through pytest-docker and returns a
cluster with the same probes and fault controls as the process-based one: kill, stop,
pause, resume and restart act on the service's container (``restart(wipe=True)``
recreates it without its volume); client proxies work the same. Peer isolation is not
offered here. Needs a Docker engine and ``docker compose`` or ``docker-compose``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tenure.conformance.lab import BACKENDS
from tenure.conformance.lab.cluster import Cluster, LabError

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"

FIXED_PORTS: dict[str, dict[int, list[int]]] = {
    "etcd": {1: [2379], 3: [2379, 22379, 32379]},
    "zookeeper": {1: [2181], 3: [2181, 2182, 2183]},
    "consul": {1: [8500], 3: [8500, 18500, 28500]},
    "redis": {1: [6379], 3: [6379, 6380, 6381]},
}
"""Host client ports of the compose files, per backend and node count."""


def compose_file(backend: str, nodes: int) -> Path:
    """``compose/BACKEND-NODES.yml``."""
    return COMPOSE_DIR / f"{backend}-{nodes}.yml"


def compose_command() -> str:
    """``docker compose`` (v2 plugin) or ``docker-compose``, whichever is installed."""
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose"):
        return "docker-compose"
    raise LabError("--stores=docker needs `docker compose` or `docker-compose` on PATH")


class _Project:
    def __init__(self, backend: str, nodes: int) -> None:
        self.file = compose_file(backend, nodes)
        self.name = f"tenure-lab-{backend}-{nodes}"
        self.command = compose_command()
        self._stack = contextlib.ExitStack()

    def up(self) -> None:
        from pytest_docker.plugin import get_docker_services

        services = get_docker_services(self.command, str(self.file), self.name, "up -d", "down -v")
        self._stack.enter_context(services)

    def down(self) -> None:
        self._stack.close()

    def run(self, *args: str) -> str:
        argv = [*self.command.split(), "-f", str(self.file), "-p", self.name, *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result.stdout


def _compose_cluster_class(base: type[Cluster], project: _Project) -> type[Cluster]:
    base_node = base.node_class

    class ComposeNode(base_node):  # type: ignore[valid-type,misc]
        _up = False

        @property
        def running(self) -> bool:
            return self._up

        def start(self) -> None:
            project.run("up", "-d", "--no-recreate", self.name)
            self._up = True

        def kill(self) -> None:
            project.run("kill", self.name)
            self._up = False

        def stop(self) -> None:
            project.run("stop", self.name)
            self._up = False

        def pause(self) -> None:
            project.run("pause", self.name)

        def resume(self) -> None:
            if self._up:
                with contextlib.suppress(LabError):
                    project.run("unpause", self.name)

        def wipe(self) -> None:
            if base.backend == "etcd":
                raise LabError("--stores=docker: restart(wipe=True) is not offered for etcd "
                               "(the compose file bootstraps a new cluster)")
            project.run("rm", "-f", "-s", "-v", self.name)

        def log_tail(self, lines: int = 40) -> str:
            try:
                return project.run("logs", "--no-color", "--tail", str(lines), self.name)
            except LabError as exc:
                return str(exc)

    class ComposeCluster(base):  # type: ignore[valid-type,misc]
        node_class = ComposeNode

        def start(self, timeout: float = 180.0) -> None:
            began = time.monotonic()
            project.up()
            for node in self.nodes:
                node._up = True
            try:
                for node in self.nodes:
                    node.wait_serving(timeout)
                self.wait_serving(timeout)
            except BaseException:
                self.close()
                raise
            self.start_time = time.monotonic() - began

        def isolate(self, node: int) -> None:
            raise LabError("--stores=docker: isolating a node from its peers is not offered")

        def rejoin(self, node: int) -> None:
            raise LabError("--stores=docker: isolating a node from its peers is not offered")

        def close(self) -> None:
            if not getattr(self, "closed", False):
                self.closed = True
                for p in self.proxies:
                    p.close()
                project.down()

    return ComposeCluster


def compose_cluster(backend: str, nodes: int = 1, **options: Any) -> Cluster:
    """The cluster of ``compose/BACKEND-NODES.yml``, not started yet."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown lab backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.pop("persistence", False):
        raise LabError("--stores=docker: set TENURE_REDIS_AOF=yes for Redis persistence")
    project = _Project(backend, nodes)
    cls = _compose_cluster_class(BACKENDS[backend], project)
    return cls(nodes, client_ports=FIXED_PORTS[backend][nodes], **options)


def start_compose_cluster(backend: str, nodes: int = 1, **options: Any) -> Cluster:
    """Brings ``compose/BACKEND-NODES.yml`` up and returns the cluster once it serves."""
    cluster = compose_cluster(backend, nodes, **options)
    cluster.start()
    return cluster
