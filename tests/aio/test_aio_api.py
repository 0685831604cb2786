"""tenure.aio in one process: cancellation removes the queue entry, observe is an async
iterator in token order, the same exceptions as the sync API, and the loop never blocks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tenure
from tenure import aio
from tenure.leadership import State

pytestmark = [pytest.mark.aio, pytest.mark.sqlite]


def _url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/aio.db"


def test_a_cancelled_campaign_leaves_no_entry_and_the_loop_keeps_running(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await aio.connect(_url(tmp_path), ttl=5) as a, \
                await aio.connect(_url(tmp_path), ttl=5) as b, \
                await aio.connect(_url(tmp_path), ttl=5) as c:
            lead = await a.election("e").campaign("a")
            waiting = asyncio.ensure_future(b.election("e").campaign("b"))
            ticks = 0
            end = time.monotonic() + 0.5
            while time.monotonic() < end:  # the loop is free while b's campaign blocks
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks > 10 and not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            third = asyncio.ensure_future(c.election("e").campaign("c"))
            await lead.resign()
            won = await asyncio.wait_for(third, timeout=10)
            assert won.candidate_id == c.candidate_id and won.token > lead.token
            await won.resign()

    asyncio.run(scenario())


def test_observe_yields_each_leader_in_token_order(tmp_path: Path) -> None:
    async def scenario() -> list[int | None]:
        async with await aio.connect(_url(tmp_path), ttl=5) as watcher, \
                await aio.connect(_url(tmp_path), ttl=5) as candidate:
            seen: list[int | None] = []
            first = asyncio.Event()

            async def follow() -> None:
                async for info in watcher.election("o").observe(timeout=30):
                    seen.append(None if info is None else info.token)
                    first.set()
                    if len([t for t in seen if t is not None]) == 3 and info is None:
                        return

            task = asyncio.ensure_future(follow())
            await first.wait()
            for _ in range(3):
                async with candidate.election("o").campaign() as lead:
                    await _until(lambda lead=lead: lead.token in seen)
                await _until(lambda: seen[-1] is None)
            await asyncio.wait_for(task, timeout=30)
            return seen

    seen = asyncio.run(scenario())
    tokens = [t for t in seen if t is not None]
    assert len(tokens) == 3 and tokens == sorted(tokens)


def test_the_same_exceptions_as_the_sync_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await aio.connect(_url(tmp_path), ttl=5) as a, \
                await aio.connect(_url(tmp_path), ttl=5) as b:
            with pytest.raises(tenure.InvalidNameError):
                a.election("bad name")
            lead = await a.election("x").campaign()
            with pytest.raises(tenure.CampaignTimeout):
                await b.election("x").campaign(timeout=0.2)
            with pytest.raises(tenure.UsageError):
                await a.election("x").campaign()
            with pytest.raises(tenure.InvalidValueError):
                await lead.proclaim(b"v" * 5000)
            await lead.guarded_write("k/1", b"v")
            assert await b.read("k/1") == b"v"
            await lead.resign()
            # A resign is not a loss: RESIGNED, and ensure() says NotLeader.
            assert lead.state is State.RESIGNED and not lead.lost
            assert lead.lost_reason == "resigned"
            assert await asyncio.wait_for(lead.wait_lost(timeout=5), timeout=10)
            with pytest.raises(tenure.NotLeader, match="resigned"):
                lead.ensure()
            with pytest.raises(tenure.NotLeader):
                await lead.proclaim(b"late")
        with pytest.raises(tenure.ConfigError):
            await aio.connect("nosuch://x")

    asyncio.run(scenario())


async def _until(predicate: object, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def _until_waiting(client: aio.Client, election: str, entries: int) -> None:
    """Polls the store until ``election`` has ``entries`` candidates (no event tells)."""
    end = time.monotonic() + 10
    while len(client.sync.election(election).contenders()) < entries:
        assert time.monotonic() < end, "the campaign never queued"
        await asyncio.sleep(0.01)


def test_campaigns_reuse_the_clients_threads_and_close_ends_them(tmp_path: Path) -> None:
    """A client's campaigns run on its own long-lived threads: ten campaigns one after
    another start one thread; a campaign that waits does not hold up another of the
    same client (a second thread starts), stays cancellable; a campaign waiting when
    the client closes ends with CampaignCancelled, and close() ends both threads.
    Counted, not timed (~1 s)."""
    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        async with await aio.connect(_url(tmp_path), ttl=5) as other:
            client = await aio.connect(_url(tmp_path), ttl=5)
            for _ in range(10):
                await (await client.election("reuse").campaign("v")).resign()
            seen["after 10 campaigns"] = client._workers.started
            held = await other.election("busy").campaign("other")
            waiting = asyncio.ensure_future(client.election("busy").campaign("v"))
            won = await asyncio.wait_for(client.election("free").campaign("v"), timeout=10)
            seen["while one waits"] = client._workers.started
            seen["waiting still"] = not waiting.done()
            await won.resign()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            seen["entries left"] = [c.candidate_id for c in other.sync.election("busy")
                                    .contenders()]
            seen["other id"] = other.candidate_id
            # a campaign waiting when the client closes ends (CampaignCancelled)
            closing = asyncio.ensure_future(client.election("busy").campaign("v"))
            await _until_waiting(other, "busy", 2)
            threads = set(client._workers.threads)
            seen["threads before close"] = len(threads)
            await client.close()
            with pytest.raises(tenure.CampaignCancelled):
                await asyncio.wait_for(closing, timeout=10)
            await held.resign()
            for thread in threads:
                thread.join(timeout=10)
            seen["alive after close"] = sum(t.is_alive() for t in threads)
            seen["started in all"] = client._workers.started
        return seen

    seen = asyncio.run(scenario())
    other_id = seen.pop("other id")
    assert seen == {"after 10 campaigns": 1, "while one waits": 2, "waiting still": True,
                    "entries left": [other_id], "threads before close": 2,
                    "alive after close": 0, "started in all": 2}, seen


def test_idle_campaign_threads_shrink_to_one_which_stays_until_close() -> None:
    """Threads idle past their timeout end, except the client's last idle one (its next
    campaign starts no thread); close() ends that one. Counted (~0.5 s)."""
    import threading

    from tenure.aio import _Workers

    workers = _Workers(idle=0.05)
    release = threading.Event()
    done: list[int] = []
    delivered = threading.Semaphore(0)

    def job(n: int) -> Callable[[], Callable[[], None]]:
        def call() -> Callable[[], None]:
            release.wait(10)
            done.append(n)
            return delivered.release
        return call

    workers.submit(job(1), "t")
    workers.submit(job(2), "t")  # the first is busy: a second thread
    release.set()
    assert delivered.acquire(timeout=10) and delivered.acquire(timeout=10)
    end = time.monotonic() + 10
    while len(workers.threads) > 1:
        assert time.monotonic() < end, "an idle thread past its timeout did not end"
        time.sleep(0.01)
    time.sleep(0.3)  # six idle timeouts: the last idle thread must still be there
    (last,) = workers.threads
    workers.submit(job(3), "t")
    assert delivered.acquire(timeout=10)
    assert workers.started == 2 and sorted(done) == [1, 2, 3]
    workers.close()
    last.join(timeout=10)
    assert not last.is_alive() and not workers.threads
