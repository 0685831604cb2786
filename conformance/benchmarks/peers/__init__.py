"""The contenders: tenure and the peer tools, one module each.

Import package ``tenure.conformance.benchmarks.peers``, folder
``conformance/benchmarks/peers/``.

``TOOLS`` maps a tool name to ``(module, class)``; modules are imported lazily, in the
worker process, so a peer library that is not installed only fails the systems that
use it, with the import error as the reason (:func:`unavailable`).
"""

from __future__ import annotations

import importlib

from tenure.conformance.benchmarks.peers.base import Contender, LostCallback, Unsupported

TOOLS: dict[str, tuple[str, str]] = {
    "tenure": ("tenure_native", "TenureContender"),
    "tenure-serve": ("gateway", "GatewayContender"),
    "tooz": ("tooz_peer", "ToozContender"),
    "kazoo": ("kazoo_peer", "KazooContender"),
    "redis-lock": ("redis_lock", "RedisLockContender"),
    "python-redis-lock": ("python_redis_lock", "PythonRedisLockContender"),
    "consul-guide": ("consul_guide", "ConsulGuideContender"),
    "etcd-lock": ("etcd_lock", "EtcdLockContender"),
    "tenure-unwatched": ("tenure_unwatched", "UnwatchedTenureContender"),  # an experiment
}

#: The Python modules each tool needs (checked by :func:`unavailable`).
REQUIRES: dict[str, tuple[str, ...]] = {
    "tenure": (),
    "tenure-serve": ("aiohttp",),
    "tooz": ("tooz",),
    "kazoo": ("kazoo",),
    "redis-lock": ("redis",),
    "python-redis-lock": ("redis_lock",),
    "consul-guide": (),
    "etcd-lock": ("pyetcd",),
    "tenure-unwatched": ("kazoo",),
}

#: Modules that are not in tenure's ``bench`` extra: the package that brings each.
PIP_NAMES: dict[str, str] = {"redis_lock": "python-redis-lock"}


def make_contender(tool: str, url: str, election: str, ttl: float, member_id: str,
                   on_lost: LostCallback) -> Contender:
    """A new contender of ``tool`` (import errors propagate)."""
    module_name, class_name = TOOLS[tool]
    module = importlib.import_module(f"tenure.conformance.benchmarks.peers.{module_name}")
    cls: type[Contender] = getattr(module, class_name)
    return cls(url, election, ttl, member_id, on_lost)


def unavailable(tool: str) -> str | None:
    """Why ``tool`` cannot run here (a module it needs does not import), else None."""
    for name in REQUIRES[tool]:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            package = PIP_NAMES.get(name, "'tenure[bench]'")
            return f"{name} is not installed ({exc}); pip install {package}"
    return None


__all__ = ["TOOLS", "Contender", "LostCallback", "Unsupported", "make_contender",
           "unavailable"]
