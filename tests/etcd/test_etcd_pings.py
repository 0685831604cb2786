"""An etcd client sends no HTTP/2 PING per keepalive, counted on the wire.

gRPC's BDP probe (on by default) sent a PING after data arrived, for etcd to answer:
with keepalives every TTL/3 that was a PING for most keepalive answers, work on both
ends for nothing (it sizes flow-control windows for bulk transfers; etcd's messages
are small). The client now turns it off (``grpc.http2.bdp_probe`` 0 in GRPC_OPTIONS).
A relay between one leading client and etcd parses the client's HTTP/2 frames
(cleartext h2c) and counts its PINGs that are not acknowledgements: over 6 keepalives
at most 1 (gRPC's own keepalive ping every 10 s may fall in the window); with BDP
probing, 8 (counted on the old code). ~5 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

import tenure
from tenure.adapters.etcd import EtcdStore
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]

TTL = 2.0
KEEPALIVES = 6
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING, ACK = 6, 0x1


class FrameRelay:
    """A TCP relay to ``host:port`` on its own loop thread, counting the HTTP/2 frames
    the client sends by (type, flags)."""

    def __init__(self, host: str, port: int) -> None:
        self.frames: Counter[tuple[int, int]] = Counter()
        self._lock = threading.Lock()
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-relay")
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def pings(self) -> int:
        with self._lock:
            return sum(n for (kind, flags), n in self.frames.items()
                       if kind == PING and not flags & ACK)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def down() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        async def up() -> None:
            buffer, started = b"", False
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                buffer += data
                if not started:
                    if len(buffer) < len(PREFACE):
                        continue
                    assert buffer.startswith(PREFACE), buffer[:30]
                    buffer, started = buffer[len(PREFACE):], True
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    with self._lock:
                        self.frames[(buffer[3], buffer[4])] += 1
                    buffer = buffer[9 + length:]
            up_writer.close()

        await asyncio.gather(up(), down(), return_exceptions=True)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_keepalives_are_not_followed_by_bdp_pings(etcd_cluster: Cluster) -> None:
    host, port = etcd_cluster.url.removeprefix("etcd://").split(",")[0].split(":")
    relay = FrameRelay(host, int(port))
    try:
        with tenure.connect(f"etcd://127.0.0.1:{relay.port}", ttl=TTL) as client:
            lead = client.election(f"pings-{time.monotonic_ns()}").campaign(timeout=30)
            store = client.store
            assert isinstance(store, EtcdStore)
            start, pings = store.keepalives, relay.pings()
            deadline = time.monotonic() + 30
            while store.keepalives < start + KEEPALIVES and time.monotonic() < deadline:
                time.sleep(0.05)  # polls the test's own counter; the count is the check
            sent, pinged = store.keepalives - start, relay.pings() - pings
            print(f"\nclient PINGs over {sent} keepalives: {pinged}; frames {relay.frames}")
            assert sent >= KEEPALIVES
            assert pinged <= 1, (pinged, relay.frames)
            lead.resign()
    finally:
        relay.close()
