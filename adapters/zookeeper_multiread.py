"""ZooKeeper's ``multiRead`` (server 3.6+): several reads sent as ONE request, answered
by ONE response, for :mod:`tenure.adapters.zookeeper`'s waiter step (the listing and
the handoff-marker read).

Hand-written because kazoo (2.11) has no multiRead: :class:`MultiRead` is the request
record kazoo's connection sends like its own ``Transaction`` (``type``, ``serialize``,
``deserialize``), encoded as ZooKeeper's jute ``MultiOperationRecord`` of
``GetChildrenRequest``/``GetDataRequest`` ops, never with watches. The server runs the
ops one after another, in order, against a state that only moves forward (like
pipelined requests of one session; not a snapshot).

Promises: :func:`send` returns kazoo's pending answer, a list with one entry per op --
the children (a list of names) or ``(data, stat)`` -- or the op's exception (NoNodeError,
NoAuthError, ...) as a value. A server older than 3.6 answers ``UnimplementedError``
(raised by the wait): the caller then falls back to separate requests.
"""

from __future__ import annotations

from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import EXCEPTIONS
from kazoo.protocol.serialization import (
    MultiHeader,
    ZnodeStat,
    int_struct,
    multiheader_struct,
    read_buffer,
    read_string,
    stat_struct,
    write_string,
)

MULTI_READ = 22
GET_DATA = 4
GET_CHILDREN = 8
ERROR = -1


class MultiRead:
    """A ``multiRead`` of ``(op, path)`` pairs, ``op`` GET_CHILDREN or GET_DATA."""

    type = MULTI_READ

    def __init__(self, ops: list[tuple[int, str]]) -> None:
        if any(op not in (GET_DATA, GET_CHILDREN) for op, _ in ops):
            raise ValueError(f"multiRead takes only getData/getChildren ops, not {ops!r}")
        self.ops = ops

    def serialize(self) -> bytearray:
        b = bytearray()
        for op, path in self.ops:
            b += multiheader_struct.pack(op, False, -1)
            b += write_string(path)
            b += b"\0"  # no watch
        b += multiheader_struct.pack(-1, True, -1)
        return b

    @classmethod
    def deserialize(cls, data: bytes, offset: int) -> list[Any]:
        results: list[Any] = []
        header, offset = MultiHeader.deserialize(data, offset)
        while not header.done:
            if header.type == GET_CHILDREN:
                count = int_struct.unpack_from(data, offset)[0]
                offset += int_struct.size
                children = []
                for _ in range(max(count, 0)):
                    child, offset = read_string(data, offset)
                    children.append(child)
                results.append(children)
            elif header.type == GET_DATA:
                value, offset = read_buffer(data, offset)
                results.append((value, ZnodeStat._make(stat_struct.unpack_from(data, offset))))
                offset += stat_struct.size
            elif header.type == ERROR:
                err = int_struct.unpack_from(data, offset)[0]
                offset += int_struct.size
                results.append(EXCEPTIONS[err]())
            else:
                raise ValueError(f"unexpected multiRead result type {header.type}")
            header, offset = MultiHeader.deserialize(data, offset)
        return results


def send(zk: KazooClient, ops: list[tuple[int, str]]) -> Any:
    """Sends one multiRead (see the module docstring); returns kazoo's pending answer."""
    pending = zk.handler.async_result()
    zk._call(MultiRead(ops), pending)  # how kazoo sends its own Transaction
    return pending


__all__ = ["GET_CHILDREN", "GET_DATA", "MultiRead", "send"]
