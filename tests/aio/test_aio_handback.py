"""How an asyncio campaign reaches its thread and comes back (``tenure serve`` runs every
caller's campaign this way): no task and no shield between the awaiting code and the
campaign thread -- each cost a turn of the loop on the measured path, where the store
client's own threads (etcd's guard, kazoo's, Consul's) compete for the GIL -- and a
cancel that lands after the thread answered still resigns what it won.
Counted, not timed (~0.5 s)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import pytest

from tenure import aio

pytestmark = [pytest.mark.aio, pytest.mark.sqlite]

ROUNDS = 5


def test_a_campaign_starts_no_task_and_comes_back_in_one_loop_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[int] = []
    real_post = aio._post

    def post(loop: asyncio.AbstractEventLoop, settle: Callable[..., None], result: Any,
             error: BaseException | None) -> None:
        posted.append(1)
        real_post(loop, settle, result, error)

    monkeypatch.setattr(aio, "_post", post)

    async def scenario() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        tasks = [0]

        def factory(loop: asyncio.AbstractEventLoop,
                    coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
                    **kwargs: Any) -> asyncio.Task[Any]:
            tasks[0] += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        async with await aio.connect(f"sqlite://{tmp_path}/h.db", ttl=5) as client:
            election = client.election("handback")
            await (await election.campaign()).resign()  # the session is open now
            loop.set_task_factory(factory)  # type: ignore[arg-type]
            posted.clear()
            leads = []
            for _ in range(ROUNDS):
                leads.append(await election.campaign())
                loop.set_task_factory(None)
                await leads[-1].resign()
                loop.set_task_factory(factory)  # type: ignore[arg-type]
            loop.set_task_factory(None)
            return {"tasks": tasks[0], "posted": len(posted),
                    "tokens rising": int(all(a.token < b.token
                                             for a, b in itertools.pairwise(leads)))}

    # was 1 task per campaign (run_blocking wrapped in a task, awaited through a shield)
    assert asyncio.run(scenario()) == {"tasks": 0, "posted": ROUNDS, "tokens rising": 1}


def test_a_cancel_after_the_thread_won_resigns_the_leadership(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread's answer is in, the awaiting task is cancelled before it resumes: the
    won leadership is resigned before CancelledError reaches the caller."""
    url = f"sqlite://{tmp_path}/c.db"
    pending: list[asyncio.Future[Any]] = []
    real_post = aio._post

    def post_then_cancel(loop: asyncio.AbstractEventLoop, settle: Callable[..., None],
                         result: Any, error: BaseException | None) -> None:
        def settle_then_cancel(result: Any, error: BaseException | None) -> None:
            settle(result, error)
            for task in pending:
                task.cancel()
            pending.clear()
        real_post(loop, settle_then_cancel, result, error)

    async def scenario() -> tuple[object, bool]:
        async with await aio.connect(url, ttl=5) as client, \
                await aio.connect(url, ttl=5) as other:
            monkeypatch.setattr(aio, "_post", post_then_cancel)
            campaign = asyncio.ensure_future(client.election("late").campaign())
            pending.append(campaign)
            with pytest.raises(asyncio.CancelledError):
                await campaign
            monkeypatch.setattr(aio, "_post", real_post)
            leader = await other.election("late").leader()
            return leader, client.sync.idle()

    leader, idle = asyncio.run(scenario())
    assert leader is None, f"the cancelled campaign's leadership was left: {leader}"
    assert idle, "the client still holds something after the cancelled campaign"
