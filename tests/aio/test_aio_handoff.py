"""tenure.aio handoff: ``await lead.handoff(to=...)`` lands on the named waiter (not
the first in line) with a larger token, and a refused handoff keeps this leadership."""

from __future__ import annotations

import asyncio

import pytest

from tenure import aio
from tenure.leadership import State

pytestmark = pytest.mark.aio


def test_an_asyncio_leader_hands_off_to_the_named_waiter(aio_store: tuple[str, float]) -> None:
    url, ttl = aio_store

    async def scenario() -> None:
        async with await aio.connect(url, ttl=ttl, candidate_id="lead") as a, \
                await aio.connect(url, ttl=ttl, candidate_id="first") as b, \
                await aio.connect(url, ttl=ttl, candidate_id="named") as c:
            lead = await a.election("aio/handoff").campaign()
            first = asyncio.ensure_future(b.election("aio/handoff").campaign())
            while len(await asyncio.to_thread(a.sync.election("aio/handoff").contenders)) < 2:
                await asyncio.sleep(0.02)
            named = asyncio.ensure_future(c.election("aio/handoff").campaign())
            while len(await asyncio.to_thread(a.sync.election("aio/handoff").contenders)) < 3:
                await asyncio.sleep(0.02)
            refused = await lead.handoff(to="ghost", timeout=5)
            assert not refused.ok and refused.leadership is lead and lead.state is State.HELD
            result = await lead.handoff(to="named", timeout=ttl * 3 + 10)
            assert result.ok, result.message
            won = await asyncio.wait_for(named, timeout=30)
            assert won.token == result.leader.token > lead.token  # type: ignore[union-attr]
            assert not first.done()
            assert await lead.wait_lost(timeout=0)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await won.resign()

    asyncio.run(scenario())
