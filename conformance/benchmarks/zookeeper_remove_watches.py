"""ZooKeeper's ``removeWatches`` (server 3.5+): drops this session's data watches on one
node. Used by :mod:`.zookeeper_delete_trace` to measure taking a leader's own-node watch
off ahead of its ``delete`` (so the delete fires only the successor's watch): measured
slower than keeping the watch, so tenure's resign does not do it.

Hand-written because kazoo (2.11) has no removeWatches: :class:`RemoveDataWatches` is
the request record kazoo's connection sends like its own (``type``, ``serialize``,
``deserialize``), encoded as ZooKeeper's jute ``RemoveWatchesRequest`` (path, watcher
type 2 = data); the answer has no body.

Promises: :func:`send` returns kazoo's pending answer (True), or the server's error as
its exception: ``NoWatcherError`` when the session holds no data watch on the node (it
fired, or was never set). The server drops EVERY data watch this session holds on the
node, whoever in the process set it: the caller must know nobody else relies on one.
Kazoo's own record of the callbacks is not touched (see :func:`forget_callbacks`).
Does not: send anything to other sessions, or change the node.
"""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.serialization import int_struct, write_string

REMOVE_WATCHES = 18
DATA_WATCHES = 2  # ZooKeeper's WatcherType.Data: getData/exists watches


class RemoveDataWatches:
    """A ``removeWatches`` of the data watches on ``path``."""

    type = REMOVE_WATCHES

    def __init__(self, path: str) -> None:
        self.path = path

    def serialize(self) -> bytes:
        return bytes(write_string(self.path)) + bytes(int_struct.pack(DATA_WATCHES))

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> bool:
        return True


def send(zk: KazooClient, path: str) -> Any:
    """Sends one removeWatches of ``path``'s data watches; returns kazoo's pending answer."""
    pending = zk.handler.async_result()
    zk._call(RemoveDataWatches(path), pending)  # how kazoo sends its own requests
    return pending


def forget_callbacks(zk: KazooClient, path: str) -> None:
    """Drops kazoo's record of ``path``'s data-watch callbacks (after :func:`send`, for a
    node that will not come back: kazoo would keep them until an event on it)."""
    zk._data_watchers.pop(path, None)


__all__ = ["RemoveDataWatches", "forget_callbacks", "send"]
