"""A campaign awaited through ``tenure.aio`` and cancelled twice (the second cancel
arriving while the first one's clean-up waits for the campaign thread) still ends its
campaign before the cancel reaches the caller: no entry and no reservation is left on
the client (``tenure serve`` pools such a client for the next caller)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tenure import aio

pytestmark = [pytest.mark.aio, pytest.mark.sqlite]


def test_a_campaign_cancelled_twice_is_over_when_the_cancel_arrives(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/store.db"

    async def main() -> None:
        leader = await aio.connect(url, ttl=2.0, candidate_id="leader")
        waiter = await aio.connect(url, ttl=2.0, candidate_id="waiter")
        try:
            held = await leader.election("e").campaign(timeout=10)
            campaign = asyncio.ensure_future(waiter.election("e").campaign(timeout=30))
            for _ in range(500):  # until the waiter's entry is queued
                names = [c.candidate_id for c in
                         await asyncio.to_thread(leader.sync.election("e").contenders)]
                if "waiter" in names:
                    break
                await asyncio.sleep(0.01)
            assert "waiter" in names
            campaign.cancel()
            await asyncio.sleep(0)  # the first cancel is being handled: now the second
            campaign.cancel()
            with pytest.raises(asyncio.CancelledError):
                await campaign
            assert waiter.sync.idle(), "the cancelled campaign was still running"
            names = [c.candidate_id for c in
                     await asyncio.to_thread(leader.sync.election("e").contenders)]
            assert names == ["leader"]
            await held.resign()
        finally:
            await waiter.close()
            await leader.close()

    asyncio.run(main())
