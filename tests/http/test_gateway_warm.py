"""Warm sessions in the gateway (tenure.http.pool): a campaign on a warm gateway opens
no store client, connection or session, and each caller's liveness stays its own.

The gateway runs in this process (:class:`tenure.http.app.Gateway`, the object behind
the routes) so that store clients and sessions can be counted where they are opened;
on Redis the store's own counter of connections received is read as well. The HTTP
end-to-end liveness tests (a SIGKILLed caller loses within its TTL) are in
test_gateway_e2e.py and run with the warm pool on (the default)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tenure.adapters
from tenure.conformance.lab.fixtures import SharedClusters, store_for
from tenure.http.app import Gateway, GatewayConfig
from tenure.http.handles import Holder

pytestmark = pytest.mark.http

ROUNDS = 5


@pytest.fixture(params=[
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
    pytest.param("etcd", marks=pytest.mark.etcd, id="etcd"),
])
def any_store(request: pytest.FixtureRequest, lab_clusters: SharedClusters,
              tmp_path: Path) -> tuple[str, float]:
    return store_for(request, lab_clusters, tmp_path)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts store clients opened (``open_store``: each is the store's connection),
    sessions opened on them, the session keeper's threads started, and the threads
    campaigns run on (a client's own, started by its first campaign or by the pool
    opening its session)."""
    counts: Counter[str] = Counter()
    real_open = tenure.adapters.open_store

    def open_store(url: str, *args: Any, **kwargs: Any) -> Any:
        counts["clients"] += 1
        store = real_open(url, *args, **kwargs)
        real_session = store.open_session

        def open_session(ttl: float) -> float:
            counts["sessions"] += 1
            lifetime: float = real_session(ttl)
            return lifetime

        store.open_session = open_session
        return store

    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name in ("tenure-renewer", "tenure-watchdog"):
            counts["keeper threads"] += 1
        if thread.name in ("tenure-aio-campaign", "tenure-serve-open"):
            counts["campaign threads"] += 1
        real_start(thread)

    monkeypatch.setattr(tenure.adapters, "open_store", open_store)
    monkeypatch.setattr(threading.Thread, "start", start)
    yield counts


def _run(url: str, ttl: float, body: Callable[[Gateway], Awaitable[None]],
         warm: int = 2) -> None:
    async def main() -> None:
        gateway = Gateway(GatewayConfig(backend_url=url, ttl=ttl, warm_sessions=warm))
        await gateway.start()
        try:
            await _until(lambda: len(gateway.holders.pool) >= warm)
            await body(gateway)
        finally:
            await gateway.close()

    asyncio.run(main())


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Polls gateway state that has no event of its own (the pool refilling)."""
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _campaign(gateway: Gateway, election: str, candidate_id: str | None = None,
                    ttl: float | None = None) -> Holder:
    return await gateway.holders.campaign(
        election, owner=None, mode="handle", candidate_id=candidate_id, value=b"v",
        timeout=30, ttl=ttl)


def _redis_connections(url: str) -> int:
    import redis

    host, port = url.split("://", 1)[1].split("/", 1)[0].split(",")[0].rsplit(":", 1)
    conn = redis.Redis(host=host, port=int(port))
    try:
        return int(conn.info("stats")["total_connections_received"])
    finally:
        conn.close()


def test_campaigns_on_a_warm_gateway_open_no_store_client_session_or_connection(
    any_store: tuple[str, float], opened: Counter[str],
) -> None:
    url, ttl = any_store
    election = f"warm/count/{uuid.uuid4().hex[:8]}"
    seen: dict[str, Any] = {}

    async def body(gateway: Gateway) -> None:
        first = await _campaign(gateway, election)  # the pool settles: 2 idle + 1 back
        await gateway.holders.end(first, "resigned")
        await _until(lambda: len(gateway.holders.pool) >= 3)
        opened.clear()
        redis_before = _redis_connections(url) if url.startswith("redis") else 0
        tokens = []
        for n in range(ROUNDS):
            holder = await _campaign(gateway, election, candidate_id=f"caller-{n}")
            assert holder.leadership.candidate_id == f"caller-{n}"
            tokens.append(holder.leadership.token)
            await gateway.holders.end(holder, "resigned")
        if url.startswith("redis"):
            seen["redis connections"] = _redis_connections(url) - redis_before - 1
        seen["tokens"] = tokens
        seen["taken"] = dict(gateway.holders.pool.taken)

    _run(url, ttl, body)
    assert dict(opened) == {}, f"a warm gateway opened {dict(opened)} in {ROUNDS} campaigns"
    # Redis's own count: without warm sessions 2 per campaign. redis-py's pool of the
    # one client in use may open its second connection once, if a renewal overlaps a
    # campaign (the library's client does the same); never one per campaign.
    assert seen.get("redis connections", 0) <= 1, seen
    assert seen["tokens"] == sorted(set(seen["tokens"])), seen
    assert seen["taken"]["cold"] == 0, seen


def test_without_warm_sessions_each_campaign_opens_a_client_and_a_session(
    tmp_path: Path, opened: Counter[str],
) -> None:
    """The figure the pool removes (and proof that the counter counts)."""
    async def body(gateway: Gateway) -> None:
        await gateway.holders.end(await _campaign(gateway, "warm/cold"), "resigned")
        opened.clear()
        for _ in range(ROUNDS):
            await gateway.holders.end(await _campaign(gateway, "warm/cold"), "resigned")

    _run(f"sqlite://{tmp_path}/store.db", 1.0, body, warm=0)
    assert opened == {"clients": ROUNDS, "sessions": ROUNDS, "keeper threads": 2 * ROUNDS,
                      "campaign threads": ROUNDS}


@pytest.mark.sqlite
def test_each_caller_keeps_its_own_session_and_a_vanished_one_loses_alone(
    tmp_path: Path,
) -> None:
    """Two callers hold two elections through one warm gateway: each on its own
    session; the one that sends no keepalive loses within its TTL, the other keeps
    leading on an untouched session; the loser's client (its entry withdrawn) serves
    the next caller. A leadership the core reports lost is never pooled."""
    ttl = 1.0
    result: dict[str, Any] = {}

    async def body(gateway: Gateway) -> None:
        pool = gateway.holders.pool
        silent = await _campaign(gateway, "warm/a", "silent")
        alive = await _campaign(gateway, "warm/b", "alive")
        assert silent.client is not alive.client
        assert silent.client.sync.keeper is not alive.client.sync.keeper
        alive_session = alive.client.sync.keeper.generation
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not silent.ended.is_set():
            gateway.holders.keepalive(alive)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(silent.ended.wait(), timeout=ttl / 4)
        result["silent lost after"] = loop.time() - start
        result["silent reason"] = silent.end_reason
        gateway.holders.keepalive(alive)
        result["alive held"] = not alive.ended.is_set() and alive.valid_for() > 0
        result["alive same session"] = alive.client.sync.keeper.generation == alive_session
        assert silent.closing is not None
        await silent.closing
        result["silent pooled"] = silent.client in pool
        nxt = await _campaign(gateway, "warm/a", "next")
        result["next token above"] = nxt.leadership.token > silent.leadership.token
        result["next on the pooled client"] = nxt.client is silent.client
        # A loss reported by the core (here as an adapter would: mark_lost) closes.
        nxt.leadership.sync.mark_lost("test: the store said the entry is gone")
        await _until(lambda: nxt.ended.is_set() and nxt.closing is not None)
        assert nxt.closing is not None
        await nxt.closing
        result["lost client closed"] = nxt.client.sync.closed
        result["alive still held"] = not alive.ended.is_set()
        await gateway.holders.end(alive, "resigned")

    _run(f"sqlite://{tmp_path}/store.db", ttl, body)
    assert result["silent lost after"] < ttl + 1.0, result
    assert "no keepalive" in result["silent reason"], result
    assert result == {**result, "alive held": True, "alive same session": True,
                      "silent pooled": True, "next token above": True,
                      "next on the pooled client": True, "lost client closed": True,
                      "alive still held": True}, result


@pytest.mark.parametrize("raw", ["-1", "65", "two"])
def test_a_bad_warm_sessions_count_is_refused_by_name(raw: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tenure.cli.main", "serve",
                           "--warm-sessions", raw], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "--warm-sessions" in done.stderr and repr(raw) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
