"""What runs against each store: tenure and the peer tools users would pick there.

A :class:`System` is one tool on one store: how to build its URL from the store's
``host:port`` list (so the same tool can be pointed at proxies), its TTL, and the
measurements it cannot take, each with the reason (reported, never dropped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit, urlunsplit

from tenure.conformance.benchmarks.peers import unavailable

MEASUREMENTS = ("handover", "failover", "detect-cut", "detect-pause", "campaign", "idle")

#: Smallest TTL each store honours exactly in the lab, and how many TTLs it may take to
#: expire a dead session (1 everywhere: the Consul adapter sends TTL/2 to a server that
#: invalidates after twice what it is sent): as in the conformance suite.
STORE_TTL: dict[str, tuple[float, float]] = {
    "sqlite": (1.0, 1.0), "etcd": (2.0, 1.0), "zookeeper": (2.0, 1.0),
    "consul": (1.0, 1.0), "redis": (1.0, 1.0), "bully": (1.0, 1.0),
    "postgres": (1.0, 1.0),
}

#: The one TTL every idle row runs at, tenure and peers on every store: the largest of
#: the stores' minimums (2 s, also kazoo's on ZooKeeper, the idle reference), so every
#: store honours it. Keep-alive work per minute scales with 1/TTL: rows at different
#: TTLs would not compare. The other measurements keep each store's minimum.
IDLE_TTL: float = max(least for least, _ in STORE_TTL.values())

NO_LOSS_EVENT = "tooz has no leadership-lost event: its user is never told"
REDIS_LOCK_NO_LOSS = ("python-redis-lock has no lost event: a failed extension ends its "
                      "renewal thread with an exception, and the holder is not told")
ETCD_LOCK_NO_LOSS = ("etcd-sdk-python's Lock has no lost event: a failed refresh raises in "
                     "the holder's refresh call, and the holder is not told")
SERVE_DETECTION = ("through the gateway the session is the gateway's (the tenure row "
                   "measures it); a caller learns of a loss from its next keepalive")


@dataclass(frozen=True)
class System:
    """One tool on one store."""

    store: str
    label: str
    tool: str
    make_url: Callable[[str], str]
    """From a comma-separated ``host:port`` list to the tool's URL."""
    hosts: str
    ttl: float
    expiry_factor: float = 1.0
    baseline: bool = False
    """tenure itself: the row every peer's ratio is computed against."""
    unsafe: bool = False
    note: str = ""
    unsupported: dict[str, str] = field(default_factory=dict)
    needs_gateway: bool = False

    @property
    def url(self) -> str:
        """The tool's URL to the store itself."""
        return self.make_url(self.hosts)

    def why_not(self, measurement: str) -> str | None:
        """Why this system cannot take ``measurement`` (None: it can)."""
        if measurement in self.unsupported:
            return self.unsupported[measurement]
        return unavailable(self.tool)


def replace_hosts(url: str, hosts: str) -> str:
    """``url`` with its host list replaced (user, path and options kept)."""
    parts = urlsplit(url)
    auth, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=(auth + "@" if auth else "") + hosts))


def store_hosts(url: str) -> str:
    """The comma-separated ``host:port`` list of a store URL."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _package(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} (not installed)"


def systems_for(store: str, url: str, ttl: float | None = None) -> list[System]:
    """tenure, the peers and tenure-through-the-gateway for the store at ``url``, at
    ``ttl`` (None: the store's minimum, :data:`STORE_TTL`; peers that take whole seconds
    get it rounded up, as at the minimum)."""
    least, factor = STORE_TTL.get(store, (1.0, 1.0))
    ttl = least if ttl is None else ttl
    hosts = store_hosts(url) if store not in ("sqlite",) else ""
    whole = math.ceil(ttl)

    def tenure_url(h: str) -> str:
        return url if store in ("sqlite", "bully") else replace_hosts(url, h)

    def first(h: str) -> str:
        return h.split(",")[0]

    embedded = {"detect-cut": "embedded store on this host: no network path to cut (the "
                              "pause row covers loss)"} if store == "sqlite" else {}
    found = [System(store, "tenure", "tenure", tenure_url, hosts, ttl, factor, baseline=True,
                    unsupported=embedded)]
    if store == "bully":
        return [System(
            store, "bully reference (UNSAFE)", "tenure", tenure_url, hosts, ttl, factor,
            unsafe=True,
            note="Bully algorithm over TCP, no store: two leaders under a partition",
            unsupported={
                "failover": "a new Bully peer with a higher id takes over from the live "
                            "leader at once, so there is no queued successor to time",
                "detect-cut": "no store to be cut from: its leader never loses (unsafe)",
                "detect-pause": "nothing expires a paused Bully leader (unsafe)",
            })]
    if store == "etcd":
        found.append(System(
            store, "tooz etcd3gw", "tooz",
            lambda h: f"etcd3+http://{first(h)}?timeout={whole}", hosts, ttl, factor,
            note=f"{_package('tooz')}, {_package('etcd3gw')} (etcd's /v3 JSON gateway)",
            unsupported={"detect-cut": NO_LOSS_EVENT, "detect-pause": NO_LOSS_EVENT}))
        found.append(System(
            store, "etcd-sdk-python Lock", "etcd-lock", lambda h: f"etcd-lock://{first(h)}",
            hosts, float(whole), factor,
            note=f"{_package('etcd-sdk-python')}; watch for the delete, then lease grant + "
                 "txn; the holder refreshes every TTL/3",
            unsupported={"detect-cut": ETCD_LOCK_NO_LOSS, "detect-pause": ETCD_LOCK_NO_LOSS}))
    if store == "zookeeper":
        found.append(System(
            store, "tooz zookeeper", "tooz",
            lambda h: f"zookeeper://{h}?timeout={whole}", hosts, ttl, factor,
            note=f"{_package('tooz')} over kazoo; polls run_watchers every 0.1 s",
            unsupported={"detect-cut": NO_LOSS_EVENT, "detect-pause": NO_LOSS_EVENT}))
        found.append(System(
            store, "kazoo Election", "kazoo", lambda h: f"kazoo://{h}", hosts, ttl, factor,
            note=f"{_package('kazoo')}; loss = connection state LOST"))
    if store == "consul":
        found.append(System(
            store, "Consul guide loop", "consul-guide",
            lambda h: f"consul-guide://{first(h)}", hosts, ttl, factor,
            note="session + KV acquire + blocking query, raw HTTP; LockDelay 0 as tenure"))
    if store == "redis":
        found.append(System(
            store, "tooz redis", "tooz",
            lambda h: f"redis://{first(h)}?timeout={whole}&lock_timeout={whole}"
                      f"&membership_timeout={whole}", hosts, float(whole), factor,
            note=f"{_package('tooz')}; polls run_watchers every 0.1 s",
            unsupported={"detect-cut": NO_LOSS_EVENT, "detect-pause": NO_LOSS_EVENT}))
        found.append(System(
            store, "redis-py Lock", "redis-lock", lambda h: f"redis://{first(h)}", hosts,
            ttl, factor, note=f"{_package('redis')}; blocking acquire polls every 0.1 s"))
        found.append(System(
            store, "python-redis-lock", "python-redis-lock", lambda h: f"redis://{first(h)}",
            hosts, float(whole), factor,
            note=f"{_package('python-redis-lock')}; a waiter blocks in BLPOP, woken by the "
                 "release; whole-second expiry",
            unsupported={"detect-cut": REDIS_LOCK_NO_LOSS, "detect-pause": REDIS_LOCK_NO_LOSS}))
    found.append(System(
        store, "tenure via serve", "tenure-serve", lambda h: "", hosts, ttl, factor,
        note="HTTP gateway in handle mode, keepalive every ttl/3", needs_gateway=True,
        unsupported={"detect-cut": SERVE_DETECTION, "detect-pause": SERVE_DETECTION}))
    return found


def idle_system(system: System, url: str) -> System:
    """``system`` (from :func:`systems_for` on the store at ``url``) as the idle
    measurement runs it: at :data:`IDLE_TTL`, its URL rebuilt for that TTL."""
    for found in systems_for(system.store, url, IDLE_TTL):
        if found.label == system.label:
            return found
    raise ValueError(f"no system {system.label!r} on {system.store}")
