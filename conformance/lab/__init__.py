"""Local store clusters for tests, the conformance suite and ``tenure lab``.

Import package ``tenure.conformance.lab``, folder ``conformance/lab/``: the cluster
base (:mod:`.cluster`), one module per store (:mod:`.etcd`, :mod:`.zookeeper`,
:mod:`.consul`, :mod:`.redis`), TCP fault proxies (:mod:`.proxy`), guarded store
processes (:mod:`.processes`), docker compose clusters (:mod:`.compose`), the
``tenure lab up --detach`` supervisor (:mod:`.supervisor`) and the pytest plugin
(:mod:`.fixtures`).

Example::

    from tenure.conformance.lab import start_cluster

    with start_cluster("etcd", nodes=3) as cluster:
        cluster.url                    # "etcd://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.nodes[0].kill()        # also pause(), resume(), stop(), restart(wipe=False)
        proxy = cluster.proxy(node=1)  # proxy.url goes through a TCP proxy: cut(), heal(),
        proxy.cut()                    # latency(ms)
        cluster.isolate(2)             # cut node 2 from its peers (etcd, ZooKeeper)

Backends: ``etcd``, ``zookeeper``, ``consul``, ``redis`` with 1 or 3 nodes; Redis takes
``persistence=True`` (AOF). ``postgres`` has 1 node, or 2: a primary and a synchronous
standby (:meth:`~tenure.conformance.lab.postgres.PostgresCluster.promote`). ``kubernetes``
has 1 node: a kube-apiserver over its own 1-member etcd (:mod:`.kubernetes`). Everything
listens on 127.0.0.1 on ports chosen at run time, with data in a temporary dir removed
on exit (set ``TENURE_LAB_KEEP=1`` to keep it).
A store that cannot start raises :class:`LabError` with the reason and the logs: tests
that need a store fail, they never skip. Store processes die with the Python process
that started them, however it ends (see :mod:`tenure.conformance.lab.processes`).
"""

from __future__ import annotations

from typing import Any

from tenure.conformance.lab.cluster import ClientProxy, Cluster, LabError, Node
from tenure.conformance.lab.consul import ConsulCluster
from tenure.conformance.lab.etcd import EtcdCluster
from tenure.conformance.lab.kubernetes import KubernetesCluster
from tenure.conformance.lab.postgres import PostgresCluster
from tenure.conformance.lab.redis import RedisCluster
from tenure.conformance.lab.zookeeper import ZooKeeperCluster

BACKENDS: dict[str, type[Cluster]] = {
    "etcd": EtcdCluster,
    "zookeeper": ZooKeeperCluster,
    "consul": ConsulCluster,
    "redis": RedisCluster,
    "postgres": PostgresCluster,
    "kubernetes": KubernetesCluster,
}

__all__ = ["BACKENDS", "ClientProxy", "Cluster", "LabError", "Node", "start_cluster"]


def start_cluster(backend: str, nodes: int = 1, timeout: float = 90.0,
                  **options: Any) -> Cluster:
    """Starts ``nodes`` (1 or 3; PostgreSQL 1 or 2) servers of ``backend`` and returns the
    cluster once it serves; use it as a context manager so it stops. Raises ``ValueError`` for an
    unknown backend or node count and :class:`LabError` when the store cannot start."""
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown lab backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        ) from None
    cluster = cls(nodes, **options)
    cluster.start(timeout)
    return cluster
