"""The backends the conformance suite runs against, and their per-store timing.

Every backend whose adapter module exists is tested; a backend is never skipped. The
TTL is the smallest each store honours exactly in the lab (etcd: whole seconds, >= 2;
ZooKeeper: within 2-20 x tickTime of the lab's 200 ms; Consul: twice the lab's
``session_ttl_min``, since the adapter sends Consul half the TTL); ``expiry_factor`` says
how many TTLs the store may take to expire a dead session -- 1 everywhere now that
the Consul adapter sends TTL/2 to a server that invalidates after twice what it is
sent -- so liveness bounds are ``expiry_factor x TTL + slack``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tenure.conformance.lab.cluster import Cluster
    from tenure.conformance.lab.proxy import ProxyGroup

ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "adapters"


@dataclass(frozen=True)
class Profile:
    """How the conformance suite drives one backend."""

    name: str
    ttl: float
    expiry_factor: float = 1.0
    slack: float = 3.0
    needs_cluster: bool = True
    max_ttl: float = float("inf")
    """Largest TTL the lab's store grants (ZooKeeper: 20 x tickTime = 4 s)."""
    arrival_order: bool = True
    """The adapter's ``StoreLimits.arrival_order`` (tests that need a store without one
    run only there, and check that the adapter agrees)."""

    @property
    def failover_bound(self) -> float:
        """Longest acceptable time from a leader's crash to the next leader."""
        return self.ttl * self.expiry_factor + self.slack


PROFILES: dict[str, Profile] = {
    "sqlite": Profile("sqlite", ttl=1.0, needs_cluster=False),
    "etcd": Profile("etcd", ttl=2.0),
    "zookeeper": Profile("zookeeper", ttl=2.0, max_ttl=4.0),
    "consul": Profile("consul", ttl=1.0),
    "redis": Profile("redis", ttl=1.0),
    # One primary: PostgreSQL has no failover of its own (a promoted standby is tested in
    # tests/postgres), so the 3-node store-fault tests do not apply.
    "postgres": Profile("postgres", ttl=1.0, needs_cluster=False),
    # One kube-apiserver over one etcd (tests/kubernetes restarts both); whole-second TTLs.
    "kubernetes": Profile("kubernetes", ttl=2.0, needs_cluster=False, arrival_order=False),
}


def implemented() -> list[str]:
    """Backends whose adapter module exists, in a fixed order."""
    return [name for name in PROFILES if (ADAPTERS_DIR / f"{name}.py").exists()]


def unordered() -> list[str]:
    """Implemented backends whose stores keep no arrival order (Kubernetes)."""
    return [name for name in implemented() if not PROFILES[name].arrival_order]


def clustered() -> list[str]:
    """Implemented backends served by a store cluster (all but SQLite)."""
    return [name for name in implemented() if PROFILES[name].needs_cluster]


@dataclass
class Target:
    """A backend under test: its URL, timing profile and (for stores) its cluster."""

    profile: Profile
    url: str
    cluster: Cluster | None
    workdir: Path

    def election(self, label: str) -> str:
        """A fresh election name, so tests sharing a store never interfere."""
        return f"conformance/{label}/{uuid.uuid4().hex[:8]}"

    def proxy(self) -> ProxyGroup:
        """TCP proxies in front of every store host of :attr:`url`; the returned
        object's ``url`` is :attr:`url` with its hosts replaced by the proxies (user,
        path and options kept), and ``cut``/``heal``/``latency``/``close`` act on all."""
        from tenure.conformance.lab.proxy import Proxy, ProxyGroup

        if self.profile.name == "kubernetes" and self.cluster is not None:
            # The server is in the kubeconfig: the lab writes one naming the proxy.
            return self.cluster.proxy()
        parts = urlsplit(self.url)
        auth, _, hostlist = parts.netloc.rpartition("@")
        proxies = []
        for item in hostlist.split(","):
            host, _, port = item.rpartition(":")
            proxies.append(Proxy((host.strip("[]"), int(port)), name=f"client->{item}"))
        netloc = (auth + "@" if auth else "") + ",".join(p.address for p in proxies)
        return ProxyGroup(proxies, urlunsplit(parts._replace(netloc=netloc)))

