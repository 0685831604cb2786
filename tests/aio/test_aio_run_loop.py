"""tenure.aio's lead-forever loop: the work task is cancelled the moment leadership is
lost, on_stopped runs once per leadership, and the loop campaigns again."""

from __future__ import annotations

import asyncio

import pytest

from tenure import aio
from tenure.leadership import State

pytestmark = pytest.mark.aio


def test_the_work_task_is_cancelled_on_loss_and_the_loop_leads_again(
    aio_store: tuple[str, float],
) -> None:
    url, ttl = aio_store

    async def scenario() -> None:
        async with await aio.connect(url, ttl=ttl) as client:
            tokens: list[int] = []
            cancelled: list[int] = []
            stopped: list[tuple[int, State]] = []

            async def work(lead: aio.Leadership) -> None:
                tokens.append(lead.token)
                if len(tokens) == 2:
                    return  # the second leadership ends by itself: run() returns
                # The store ends the session behind the core's back: a loss.
                await asyncio.to_thread(client.sync.store.close_session)
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancelled.append(lead.token)
                    raise

            await asyncio.wait_for(
                client.election("run").run(
                    work, on_stopped=lambda lead, _why: stopped.append((lead.token, lead.state))),
                timeout=ttl * 3 + 30)
            assert len(tokens) == 2 and tokens[1] > tokens[0]
            assert cancelled == [tokens[0]]
            assert stopped == [(tokens[0], State.LOST), (tokens[1], State.RESIGNED)]
            assert await client.election("run").leader() is None

    asyncio.run(scenario())


def test_cancelling_the_run_task_resigns_and_reports_once(aio_store: tuple[str, float]) -> None:
    url, ttl = aio_store

    async def scenario() -> None:
        async with await aio.connect(url, ttl=ttl) as client:
            started = asyncio.Event()
            stopped: list[State] = []

            async def work(lead: aio.Leadership) -> None:
                started.set()
                await asyncio.sleep(3600)

            runner = asyncio.ensure_future(client.election("run-cancel").run(
                work, on_stopped=lambda lead, _why: stopped.append(lead.state)))
            await asyncio.wait_for(started.wait(), timeout=30)
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            assert stopped == [State.RESIGNED]
            assert await client.election("run-cancel").leader() is None

    asyncio.run(scenario())
