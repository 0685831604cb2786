"""Import package ``tenure.adapters``, folder ``adapters/``.

Backends: one module per store, each a :class:`tenure.store.Store` implementing the
whole contract. :func:`open_store` picks the module from the URL scheme and imports
it only when used, so a backend's client library is needed only by its users.
:func:`register_backend` adds a scheme for this process only (the conformance suite
registers its unsafe ``bully://`` reference that way); such schemes are never listed
in error messages.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "postgresql": ("tenure.adapters.postgres", "PostgresStore", "postgres"),
    "postgres": ("tenure.adapters.postgres", "PostgresStore", "postgres"),
    "kubernetes": ("tenure.adapters.kubernetes", "KubernetesStore", "kubernetes"),
    # Live migration between two of the above (protocol: tenure.migration); the stage is
    # in the scheme.
    "migrate+source": ("tenure.adapters.migrating", "MigratingStore", ""),
    "migrate+dual-source": ("tenure.adapters.migrating", "MigratingStore", ""),
    "migrate+dual-target": ("tenure.adapters.migrating", "MigratingStore", ""),
    "migrate+target": ("tenure.adapters.migrating", "MigratingStore", ""),
}

SCHEMES = tuple(_ADAPTERS)
STORES = ("sqlite", "etcd", "zookeeper", "consul", "redis", "postgresql", "kubernetes")
"""The stores named in the unknown-scheme message (aliases and migrate+ stages left out)."""

_registered: dict[str, tuple[str, str, str]] = {}
"""Schemes added by :func:`register_backend` (not tenure's own backends)."""


def register_backend(scheme: str, module: str, class_name: str) -> None:
    """Makes ``scheme://`` URLs open ``module.class_name`` (imported when first used) in
    this process. For backends outside the production set, e.g. the conformance suite's
    ``bully://``; they are not listed in error messages. Registering a scheme again with
    the same target does nothing; a built-in scheme or a different target is a
    ``ValueError``."""
    target = (module, class_name, "")
    if scheme in _ADAPTERS or _registered.get(scheme, target) != target:
        raise ValueError(f"backend scheme {scheme!r} is already taken")
    _registered[scheme] = target


def store_class(scheme: str) -> type[Store[Any]]:
    """The Store class for ``scheme``; ConfigError if unknown or not installed."""
    try:
        module_name, class_name, extra = _ADAPTERS.get(scheme) or _registered[scheme]
    except KeyError:
        raise ConfigError(
            f"unknown backend scheme {scheme!r}; use one of {', '.join(STORES)}, or "
            "migrate+<stage> for a live migration between two of them"
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
    cls: type[Store[Any]] = getattr(module, class_name)
    return cls


def open_store(url: BackendURL) -> Store[Any]:
    """Creates (and connects) the Store for ``url``. Writes nothing to the store."""
    return store_class(url.scheme).from_url(url)
