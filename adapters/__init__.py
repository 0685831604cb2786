"""Backends: one module per store, each a :class:`tenure.store.Store` implementing the
whole contract. :func:`open_store` picks the module from the URL scheme and imports
it only when used, so a backend's client library is needed only by its users."""

from __future__ import annotations

import importlib

from tenure.config import BackendURL
from tenure.errors import ConfigError
from tenure.store import Store

_ADAPTERS: dict[str, tuple[str, str, str]] = {
    # scheme: (module, class, pip extra)
    "sqlite": ("tenure.adapters.sqlite", "SQLiteStore", ""),
    "etcd": ("tenure.adapters.etcd", "EtcdStore", "etcd"),
    "zookeeper": ("tenure.adapters.zookeeper", "ZooKeeperStore", "zookeeper"),
    "zk": ("tenure.adapters.zookeeper", "ZooKeeperStore", "zookeeper"),
    "consul": ("tenure.adapters.consul", "ConsulStore", "consul"),
    "redis": ("tenure.adapters.redis", "RedisStore", "redis"),
    "rediss": ("tenure.adapters.redis", "RedisStore", "redis"),
    # Live migration between two of the above (tenure.migration); the stage is in the scheme.
    "migrate+source": ("tenure.migration", "MigratingStore", ""),
    "migrate+dual-source": ("tenure.migration", "MigratingStore", ""),
    "migrate+dual-target": ("tenure.migration", "MigratingStore", ""),
    "migrate+target": ("tenure.migration", "MigratingStore", ""),
    # A teaching reference that the conformance suite must catch; never for real use.
    "bully": ("tenure.adapters.bully", "BullyStore", ""),
}

SCHEMES = tuple(_ADAPTERS)


def store_class(scheme: str) -> type[Store]:
    """The Store class for ``scheme``; ConfigError if unknown or not installed."""
    try:
        module_name, class_name, extra = _ADAPTERS[scheme]
    except KeyError:
        raise ConfigError(
            f"unknown backend scheme {scheme!r}; use one of {', '.join(SCHEMES)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"backend {scheme!r} is not available in this version of tenure"
            ) from None
        raise ConfigError(
            f"backend {scheme!r} needs the Python package {exc.name!r}; "
            f"install it with: pip install 'tenure[{extra}]'"
        ) from None
    cls: type[Store] = getattr(module, class_name)
    return cls


def open_store(url: BackendURL) -> Store:
    """Creates (and connects) the Store for ``url``. Writes nothing to the store."""
    return store_class(url.scheme).from_url(url)
